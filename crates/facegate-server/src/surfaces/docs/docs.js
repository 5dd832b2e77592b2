// Renders /openapi.json as a reference page: one section per tag, one card
// per operation with its credentials, parameters, request body and
// responses, and each schema flattened into a field table. Text is only
// ever inserted with textContent, never as HTML.
"use strict";

const METHODS = ["get", "post", "put", "patch", "delete"];

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function anchor(method, path) {
  return "op-" + method + "-" + path.replace(/[^a-zA-Z0-9]+/g, "-");
}

// A description: plain paragraphs, plus Markdown tables rendered as tables.
function describe(text) {
  const out = document.createDocumentFragment();
  if (!text) return out;
  let para = [];
  let rows = [];
  const flushPara = () => {
    if (para.length) out.append(el("p", { class: "desc" }, para.join("\n")));
    para = [];
  };
  const flushTable = () => {
    if (!rows.length) return;
    const cells = (line) => line.replace(/^\||\|$/g, "").split("|").map((c) => c.trim());
    const head = cells(rows[0]);
    const table = el("table", {}, el("tr", {}, ...head.map((h) => el("th", {}, h))));
    for (const line of rows.slice(2)) {
      table.append(el("tr", {}, ...cells(line).map((c) => el("td", { class: "mono" }, c))));
    }
    out.append(table);
    rows = [];
  };
  for (const line of text.split("\n")) {
    if (line.trim().startsWith("|")) {
      flushPara();
      rows.push(line.trim());
    } else {
      flushTable();
      if (line.trim() === "") flushPara();
      else para.push(line);
    }
  }
  flushTable();
  flushPara();
  return out;
}

function resolve(doc, schema) {
  let s = schema || {};
  for (let i = 0; i < 10 && s.$ref; i++) {
    const name = s.$ref.replace("#/components/schemas/", "");
    s = (doc.components && doc.components.schemas && doc.components.schemas[name]) || {};
  }
  if (s.allOf) {
    const merged = { type: "object", properties: {}, required: [] };
    for (const part of s.allOf) {
      const r = resolve(doc, part);
      Object.assign(merged.properties, r.properties || {});
      merged.required.push(...(r.required || []));
      if (r.description && !merged.description) merged.description = r.description;
    }
    if (s.description) merged.description = s.description;
    return merged;
  }
  return s;
}

function typeName(doc, schema) {
  const raw = schema || {};
  const s = resolve(doc, raw);
  const named = raw.$ref ? raw.$ref.replace("#/components/schemas/", "") : null;
  if (s.oneOf || s.anyOf) {
    return (s.oneOf || s.anyOf).map((x) => typeName(doc, x)).join(" | ");
  }
  let t = Array.isArray(s.type) ? s.type.join(" | ") : s.type || named || "any";
  if (s.type === "array" || (Array.isArray(s.type) && s.type.includes("array"))) {
    t = "array of " + typeName(doc, s.items);
  }
  if (s.format) t += " (" + s.format + ")";
  if (s.enum) t += ": " + s.enum.filter((v) => v !== null).join(", ");
  return t;
}

function constraints(s) {
  const parts = [];
  if (s.minimum !== undefined) parts.push("min " + s.minimum);
  if (s.maximum !== undefined) parts.push("max " + s.maximum);
  if (s.maxItems !== undefined) parts.push("at most " + s.maxItems + " items");
  if (s.pattern) parts.push("pattern " + s.pattern);
  if (s.default !== undefined) parts.push("default " + JSON.stringify(s.default));
  return parts.join("; ");
}

// Rows of a schema's fields, nested objects flattened as a.b.c.
function fieldRows(doc, schema, prefix, depth, rows) {
  const s = resolve(doc, schema);
  const required = new Set(s.required || []);
  for (const [name, prop] of Object.entries(s.properties || {})) {
    const r = resolve(doc, prop);
    const full = prefix + name;
    rows.push(el("tr", {},
      el("td", { class: "mono" }, full, required.has(name) ? el("span", { class: "req", title: "required" }, " *") : null),
      el("td", { class: "mono" }, typeName(doc, prop)),
      el("td", {}, prop.description || r.description || "", el("div", { class: "muted" }, constraints(Object.assign({}, r, prop))))));
    if (depth < 4) {
      if (r.properties || r.allOf) fieldRows(doc, prop, full + ".", depth + 1, rows);
      const items = r.items && resolve(doc, r.items);
      if (items && items.properties) fieldRows(doc, r.items, full + "[].", depth + 1, rows);
    }
  }
  return rows;
}

function schemaTable(doc, schema) {
  const rows = fieldRows(doc, schema, "", 0, []);
  if (!rows.length) return el("p", { class: "mono" }, typeName(doc, schema));
  return el("table", {}, el("tr", {}, el("th", {}, "field"), el("th", {}, "type"), el("th", {}, "meaning")), ...rows);
}

function content(doc, body) {
  const out = document.createDocumentFragment();
  for (const [type, media] of Object.entries(body.content || {})) {
    out.append(el("p", { class: "muted mono" }, type));
    if (media.schema) out.append(schemaTable(doc, media.schema));
  }
  return out;
}

function operationCard(doc, method, path, op) {
  const card = el("article", { class: "op", id: anchor(method, path) },
    el("h3", {}, el("span", { class: "method " + method }, method.toUpperCase()), path));
  if (op.summary) card.append(el("p", { class: "desc" }, op.summary));
  if (op.description) card.append(describe(op.description));
  const schemes = (op.security || []).flatMap((req) => Object.keys(req));
  if (schemes.length) {
    const defs = (doc.components && doc.components.securitySchemes) || {};
    card.append(el("h4", {}, "Credentials"),
      el("p", {}, ...schemes.map((n) => el("code", {}, "header " + ((defs[n] && defs[n].name) || n)))));
  }
  if (op.parameters && op.parameters.length) {
    card.append(el("h4", {}, "Parameters"), el("table", {},
      el("tr", {}, el("th", {}, "name"), el("th", {}, "in"), el("th", {}, "type"), el("th", {}, "meaning")),
      ...op.parameters.map((p) => el("tr", {},
        el("td", { class: "mono" }, p.name, p.required ? el("span", { class: "req", title: "required" }, " *") : null),
        el("td", {}, p.in),
        el("td", { class: "mono" }, typeName(doc, p.schema)),
        el("td", {}, p.description || "", el("div", { class: "muted" }, constraints(resolve(doc, p.schema))))))));
  }
  if (op.requestBody) card.append(el("h4", {}, "Request body"), content(doc, op.requestBody));
  for (const [status, resp] of Object.entries(op.responses || {})) {
    card.append(el("h4", {}, "Response " + status), el("p", { class: "desc" }, resp.description || ""), content(doc, resp));
  }
  return card;
}

function render(doc) {
  document.title = doc.info.title + " " + doc.info.version + " API reference";
  document.getElementById("title").textContent = doc.info.title + " " + doc.info.version + " API reference";
  const main = document.getElementById("content");
  const toc = document.getElementById("toc");
  main.replaceChildren(describe(doc.info.description));
  toc.replaceChildren();
  const byTag = new Map((doc.tags || []).map((t) => [t.name, []]));
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const tag = (op.tags && op.tags[0]) || "Other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push([method, path, op]);
    }
  }
  let count = 0;
  for (const [name, ops] of byTag) {
    const tag = (doc.tags || []).find((t) => t.name === name);
    const section = el("section", { class: "tag" }, el("h2", {}, name));
    if (tag && tag.description) section.append(describe(tag.description));
    const list = el("ul", {});
    for (const [method, path, op] of ops) {
      section.append(operationCard(doc, method, path, op));
      list.append(el("li", {}, el("a", { href: "#" + anchor(method, path) },
        el("span", { class: "mono" }, method.toUpperCase() + " "), op.summary || path)));
      count++;
    }
    main.append(section);
    toc.append(el("h2", {}, name), list);
  }
  main.dataset.state = "ready";
  main.dataset.operations = String(count);
}

fetch("/openapi.json")
  .then((r) => {
    if (!r.ok) throw new Error("HTTP " + r.status);
    return r.json();
  })
  .then(render)
  .catch((e) => {
    const main = document.getElementById("content");
    main.dataset.state = "error";
    main.replaceChildren(el("p", { class: "error" }, "Could not load /openapi.json: " + e.message));
  });
