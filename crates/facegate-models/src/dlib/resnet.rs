//! dlib DNN (`dlib_face_recognition_resnet_model_v1.dat`) → ONNX.
//!
//! A dlib network is serialized outside-in: every `add_layer` writes its
//! version and then its whole sub-network before its own layer details, so
//! the file is a prefix of wrapper version numbers (2 = `add_layer`,
//! 1 = `add_tag_layer` / `add_skip_layer`), the input layer, and then each
//! layer's details from the input outwards. Tag and skip layers carry no
//! data, and which tag a skip or `add_prev` refers to is part of the C++
//! type only; they are resolved with the rules of dlib's residual templates
//! (`residual` and `residual_down` in `dnn_face_recognition_ex.cpp`):
//! a lone marker is a tag, a marker directly after a marker is a skip back
//! to the tag before the latest one, and `add_prev` adds the latest tag.
//! Everything else (channels, kernels, strides, paddings, depth) comes from
//! the data.

use facegate_onnx::proto::ModelProto;
use facegate_onnx::{Attr, GraphBuilder, BATCH};

use super::reader::{AliasTensor, Reader, Tensor};
use super::DlibError;

/// Input side length of dlib's face recognition network.
pub const RESNET_INPUT_SIZE: i64 = 150;

#[derive(Debug)]
struct Pool {
    nr: i64,
    nc: i64,
    stride: [i64; 2],
    pad: [i64; 2],
}

#[derive(Debug)]
enum Layer {
    Con {
        filters: AliasTensor,
        stride: [i64; 2],
        pad: [i64; 2],
        weights: Vec<f32>,
        bias: Option<Vec<f32>>,
    },
    Affine {
        dims: [u64; 4],
        gamma: Vec<f32>,
        beta: Vec<f32>,
    },
    Identity,
    Relu,
    MaxPool(Pool),
    AvgPool(Pool),
    AddPrev,
    Fc {
        outputs: u64,
        inputs: u64,
        weights: Vec<f32>,
        bias: Option<Vec<f32>>,
    },
}

#[derive(Debug)]
enum Item {
    Layer(Layer),
    /// `add_tag_layer` or `add_skip_layer`.
    Marker,
}

struct Input {
    mean: [f32; 3],
    rows: u64,
    cols: u64,
}

/// Converts dlib's face recognition ResNet into ONNX.
///
/// Contract: input `input` `[1,3,150,150]` float32 NCHW, **RGB, raw 0..255**
/// (dlib's per-channel mean subtraction and `/256` are inside the graph);
/// output `embedding` `[1,128]`, the raw `fc_no_bias` output (not
/// normalised; dlib compares descriptors by Euclidean distance, threshold
/// 0.6).
pub fn convert_resnet(bytes: &[u8]) -> Result<ModelProto, DlibError> {
    let mut r = Reader::new(bytes);
    r.version("add_loss_layer version", &[1])?;
    let (margin, dist_thresh) = read_loss(&mut r)?;

    // Wrapper versions, outermost first, up to the input layer.
    // Versions are 1..=3 while the input layer starts with its name's
    // length, so the first larger integer ends the prefix.
    let mut prefix = Vec::new();
    loop {
        let mut probe = r.clone();
        if probe.u64("length").is_ok_and(|n| n > 3) {
            break;
        }
        prefix.push(r.version("layer version", &[1, 2, 3])?);
    }
    let input = read_input(&mut r)?;
    let innermost = prefix
        .pop()
        .ok_or_else(|| DlibError::Invalid("network has no layers".into()))?;
    if !(2..=3).contains(&innermost) {
        return Err(DlibError::Invalid(format!(
            "first layer has version {innermost}, expected an add_layer (2 or 3)"
        )));
    }
    let mut items = vec![Item::Layer(read_layer(&mut r)?)];
    read_add_layer_state(&mut r, 3)?;
    if innermost >= 3 {
        r.u32("sample expansion factor")?;
    }
    // Versions ≥ 2 are add_layers (dlib's pre-2016 add_layer version 1 is
    // indistinguishable from a tag and not supported).
    for &v in prefix.iter().rev() {
        if v == 1 {
            items.push(Item::Marker);
        } else {
            items.push(Item::Layer(read_layer(&mut r)?));
            read_add_layer_state(&mut r, 3)?;
        }
    }
    if r.remaining() != 0 {
        return Err(DlibError::TrailingBytes(r.remaining()));
    }
    build_graph(&input, &items, margin, dist_thresh)
}

fn read_loss(r: &mut Reader) -> Result<(f32, f32), DlibError> {
    let offset = r.pos();
    match r.string()?.as_str() {
        // Values dlib hard-coded before loss_metric_2.
        "loss_metric_" => Ok((0.04, 0.6)),
        "loss_metric_2" => Ok((r.f32()?, r.f32()?)),
        other => Err(DlibError::Unexpected {
            offset,
            what: "loss layer (only loss_metric is supported)",
            found: other.into(),
        }),
    }
}

fn read_input(r: &mut Reader) -> Result<Input, DlibError> {
    r.expect_string("input_rgb_image_sized")?;
    let mean = [r.f32()?, r.f32()?, r.f32()?];
    let rows = r.u64("input rows")?;
    let cols = r.u64("input cols")?;
    if rows as i64 != RESNET_INPUT_SIZE || cols as i64 != RESNET_INPUT_SIZE {
        return Err(DlibError::Unsupported(format!(
            "input size {rows}x{cols}, expected {RESNET_INPUT_SIZE}x{RESNET_INPUT_SIZE}"
        )));
    }
    Ok(Input { mean, rows, cols })
}

/// The training state `add_layer` stores after its details: three bools
/// and `tensors` tensors (x_grad, cached_output, params_grad/grad_final).
fn read_add_layer_state(r: &mut Reader, tensors: usize) -> Result<(), DlibError> {
    for _ in 0..3 {
        r.bool("add_layer flag")?;
    }
    for _ in 0..tensors {
        r.tensor()?;
    }
    Ok(())
}

fn small(r: &mut Reader, what: &'static str, lo: i64, hi: i64) -> Result<i64, DlibError> {
    let offset = r.pos();
    let v = r.i64(what)?;
    if v < lo || v > hi {
        return Err(DlibError::OutOfRange {
            offset,
            value: i128::from(v),
            what,
        });
    }
    Ok(v)
}

fn read_pool(r: &mut Reader) -> Result<Pool, DlibError> {
    let nr = small(r, "pool rows", 0, 1 << 16)?;
    let nc = small(r, "pool cols", 0, 1 << 16)?;
    let sy = small(r, "pool stride", 1, 1 << 16)?;
    let sx = small(r, "pool stride", 1, 1 << 16)?;
    let py = small(r, "pool padding", 0, 1 << 16)?;
    let px = small(r, "pool padding", 0, 1 << 16)?;
    Ok(Pool {
        nr,
        nc,
        stride: [sy, sx],
        pad: [py, px],
    })
}

/// Slices `alias` (at `offset`) out of a layer's parameter tensor.
fn alias_slice(params: &Tensor, alias: AliasTensor, offset: usize) -> Result<Vec<f32>, DlibError> {
    let n = usize::try_from(alias.size()).unwrap_or(usize::MAX);
    params
        .data
        .get(offset..offset.saturating_add(n))
        .map(<[f32]>::to_vec)
        .ok_or_else(|| {
            DlibError::Invalid(format!(
                "parameter view of {n} values at {offset} exceeds {} parameters",
                params.data.len()
            ))
        })
}

fn read_layer(r: &mut Reader) -> Result<Layer, DlibError> {
    let offset = r.pos();
    let name = r.string()?;
    match name.as_str() {
        "con_4" | "con_5" => {
            let params = r.tensor()?;
            let num_filters = small(r, "num_filters", 1, 1 << 20)?;
            let nr = small(r, "filter rows", 0, 1 << 16)?;
            let nc = small(r, "filter cols", 0, 1 << 16)?;
            let sy = i64::from(r.i32("stride")?);
            let sx = i64::from(r.i32("stride")?);
            let py = i64::from(r.i32("padding")?);
            let px = i64::from(r.i32("padding")?);
            let filters = r.alias_tensor()?;
            let biases = r.alias_tensor()?;
            for _ in 0..4 {
                r.f64()?; // learning-rate / weight-decay multipliers
            }
            let use_bias = if name == "con_5" {
                r.bool("use_bias")?
            } else {
                true
            };
            if sy < 1 || sx < 1 || py < 0 || px < 0 || nr == 0 || nc == 0 {
                return Err(DlibError::Unsupported(format!(
                    "con_ with {nr}x{nc} filters, stride {sy}x{sx}, padding {py}x{px}"
                )));
            }
            if filters.dims[0] != num_filters as u64
                || filters.dims[2] != nr as u64
                || filters.dims[3] != nc as u64
            {
                return Err(DlibError::Invalid(format!(
                    "con_ filter view {:?} disagrees with {num_filters} {nr}x{nc} filters",
                    filters.dims
                )));
            }
            let weights = alias_slice(&params, filters, 0)?;
            let bias = if use_bias && params.data.len() as u64 == filters.size() + biases.size() {
                if biases.size() != num_filters as u64 {
                    return Err(DlibError::Invalid("con_ bias count != filter count".into()));
                }
                Some(alias_slice(&params, biases, weights.len())?)
            } else if params.data.len() as u64 == filters.size() {
                None
            } else {
                return Err(DlibError::Invalid(format!(
                    "con_ has {} parameters for {} weights",
                    params.data.len(),
                    filters.size()
                )));
            };
            Ok(Layer::Con {
                filters,
                stride: [sy, sx],
                pad: [py, px],
                weights,
                bias,
            })
        }
        "affine_" | "affine_2" => {
            let params = r.tensor()?;
            let gamma = r.alias_tensor()?;
            let beta = r.alias_tensor()?;
            r.i32("affine mode")?;
            let disabled = if name == "affine_2" {
                r.bool("disabled")?
            } else {
                false
            };
            if disabled {
                return Ok(Layer::Identity);
            }
            if gamma != beta || params.data.len() as u64 != gamma.size().saturating_mul(2) {
                return Err(DlibError::Invalid(
                    "affine_ parameter views disagree".into(),
                ));
            }
            let g = alias_slice(&params, gamma, 0)?;
            let b = alias_slice(&params, beta, g.len())?;
            Ok(Layer::Affine {
                dims: gamma.dims,
                gamma: g,
                beta: b,
            })
        }
        "bn_con2" => {
            // A batch norm stored in place of an affine layer; dlib folds it
            // when loading into `affine` (float arithmetic, as here).
            let params = r.tensor()?;
            let gamma = r.alias_tensor()?;
            let beta = r.alias_tensor()?;
            r.tensor()?; // means
            r.tensor()?; // invstds
            let running_means = r.tensor()?;
            let running_vars = r.tensor()?;
            r.u64("num_updates")?;
            r.u64("running_stats_window_size")?;
            for _ in 0..4 {
                r.f64()?;
            }
            let eps = r.f64()? as f32;
            let g = alias_slice(&params, gamma, 0)?;
            let b = alias_slice(&params, beta, g.len())?;
            if running_means.data.len() != g.len()
                || running_vars.data.len() != g.len()
                || b.len() != g.len()
            {
                return Err(DlibError::Invalid("bn_con2 statistics disagree".into()));
            }
            let scale: Vec<f32> = g
                .iter()
                .zip(&running_vars.data)
                .map(|(g, v)| g / (v + eps).sqrt())
                .collect();
            let shift = b
                .iter()
                .zip(&scale)
                .zip(&running_means.data)
                .map(|((b, s), m)| b - s * m)
                .collect();
            Ok(Layer::Affine {
                dims: gamma.dims,
                gamma: scale,
                beta: shift,
            })
        }
        "relu_" => Ok(Layer::Relu),
        "max_pool_2" => Ok(Layer::MaxPool(read_pool(r)?)),
        "avg_pool_2" => Ok(Layer::AvgPool(read_pool(r)?)),
        "add_prev_" => Ok(Layer::AddPrev),
        "fc_2" | "fc_3" => {
            let outputs = r.u64("fc outputs")?;
            let inputs = r.u64("fc inputs")?;
            let params = r.tensor()?;
            let weights = r.alias_tensor()?;
            let biases = r.alias_tensor()?;
            let bias_mode = r.i32("fc bias mode")?;
            for _ in 0..4 {
                r.f64()?;
            }
            let use_bias = if name == "fc_3" {
                r.bool("use_bias")?
            } else {
                true
            };
            if weights.size() != inputs.saturating_mul(outputs) || weights.dims[0] != inputs {
                return Err(DlibError::Invalid(
                    "fc_ weight view disagrees with its size".into(),
                ));
            }
            let w = alias_slice(&params, weights, 0)?;
            let bias = if bias_mode == 0 && use_bias {
                Some(alias_slice(&params, biases, w.len())?)
            } else {
                None
            };
            Ok(Layer::Fc {
                outputs,
                inputs,
                weights: w,
                bias,
            })
        }
        _ => Err(DlibError::Unexpected {
            offset,
            what: "layer type",
            found: name,
        }),
    }
}

/// A value in the graph and its static `[C, H, W]` shape (batch 1).
#[derive(Clone)]
struct Value {
    name: String,
    shape: [i64; 3],
}

fn pooled(len: i64, window: i64, stride: i64, pad: i64) -> Result<i64, DlibError> {
    let span = len + 2 * pad - window;
    if span < 0 {
        return Err(DlibError::Invalid(format!(
            "window {window} does not fit input {len} (padding {pad})"
        )));
    }
    Ok(span / stride + 1)
}

fn build_graph(
    input: &Input,
    items: &[Item],
    margin: f32,
    dist_thresh: f32,
) -> Result<ModelProto, DlibError> {
    let (rows, cols) = (input.rows as i64, input.cols as i64);
    let mut g = GraphBuilder::new("dlib_face_recognition_resnet_model_v1");
    let x = g.input("input", &[BATCH, 3, rows, cols]);
    // dlib's input_rgb_image_sized::to_tensor: (pixel - mean) / 256.
    let mean = g.constant_f32("rgb_mean", &[1, 3, 1, 1], &input.mean);
    let centered = g.node("Sub", &[&x, &mean], &[]);
    let scale = g.constant_f32("inv_256", &[1], &[1.0 / 256.0]);
    let mut cur = Value {
        name: g.node("Mul", &[&centered, &scale], &[]),
        shape: [3, rows, cols],
    };
    let mut tags: Vec<Value> = Vec::new();
    let mut after_marker = false;
    let mut embedding = None;
    for (i, item) in items.iter().enumerate() {
        let layer = match item {
            Item::Marker => {
                if after_marker {
                    // skip: continue from the tag before the latest one.
                    let n = tags.len();
                    cur = tags.get(n.wrapping_sub(2)).cloned().ok_or_else(|| {
                        DlibError::Unsupported("skip layer without a matching tag".into())
                    })?;
                } else {
                    tags.push(cur.clone());
                }
                after_marker = true;
                continue;
            }
            Item::Layer(l) => l,
        };
        after_marker = false;
        if embedding.is_some() {
            return Err(DlibError::Unsupported(
                "layers after the fully connected output".into(),
            ));
        }
        let [c, h, w] = cur.shape;
        cur = match layer {
            Layer::Con {
                filters,
                stride,
                pad,
                weights,
                bias,
            } => {
                let [nf, k, nr, nc] = filters.dims.map(|d| d as i64);
                if k != c {
                    return Err(DlibError::Invalid(format!(
                        "con_ expects {k} channels, got {c}"
                    )));
                }
                let wname = g.constant_f32("conv_w", &[nf, k, nr, nc], weights);
                let mut inputs = vec![cur.name.clone(), wname];
                if let Some(b) = bias {
                    inputs.push(g.constant_f32("conv_b", &[nf], b));
                }
                let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                let name = g.node(
                    "Conv",
                    &refs,
                    &[
                        Attr::ints("kernel_shape", &[nr, nc]),
                        Attr::ints("strides", &stride[..]),
                        // dlib pads symmetrically with its stored padding.
                        Attr::ints("pads", &[pad[0], pad[1], pad[0], pad[1]]),
                        Attr::int("group", 1),
                    ],
                );
                Value {
                    name,
                    shape: [
                        nf,
                        pooled(h, nr, stride[0], pad[0])?,
                        pooled(w, nc, stride[1], pad[1])?,
                    ],
                }
            }
            Layer::Affine { dims, gamma, beta } => {
                let d = dims.map(|d| d as i64);
                let ok = d[0] == 1
                    && d[1] == c
                    && ((d[2] == 1 && d[3] == 1) || (d[2] == h && d[3] == w));
                if !ok {
                    return Err(DlibError::Invalid(format!(
                        "affine_ shape {dims:?} on input {:?}",
                        cur.shape
                    )));
                }
                let s = g.constant_f32("affine_scale", &d, gamma);
                let b = g.constant_f32("affine_shift", &d, beta);
                let y = g.node("Mul", &[&cur.name, &s], &[]);
                Value {
                    name: g.node("Add", &[&y, &b], &[]),
                    shape: cur.shape,
                }
            }
            Layer::Identity => cur,
            Layer::Relu => Value {
                name: g.node("Relu", &[&cur.name], &[]),
                shape: cur.shape,
            },
            Layer::MaxPool(p) | Layer::AvgPool(p) => {
                let max = matches!(layer, Layer::MaxPool(_));
                if p.nr == 0 && p.nc == 0 {
                    let op = if max {
                        "GlobalMaxPool"
                    } else {
                        "GlobalAveragePool"
                    };
                    Value {
                        name: g.node(op, &[&cur.name], &[]),
                        shape: [c, 1, 1],
                    }
                } else if p.nr == 0 || p.nc == 0 || (!max && p.pad != [0, 0]) {
                    return Err(DlibError::Unsupported(format!("pooling {p:?}")));
                } else {
                    let op = if max { "MaxPool" } else { "AveragePool" };
                    let name = g.node(
                        op,
                        &[&cur.name],
                        &[
                            Attr::ints("kernel_shape", &[p.nr, p.nc]),
                            Attr::ints("strides", &p.stride[..]),
                            Attr::ints("pads", &[p.pad[0], p.pad[1], p.pad[0], p.pad[1]]),
                        ],
                    );
                    Value {
                        name,
                        shape: [
                            c,
                            pooled(h, p.nr, p.stride[0], p.pad[0])?,
                            pooled(w, p.nc, p.stride[1], p.pad[1])?,
                        ],
                    }
                }
            }
            Layer::AddPrev => {
                let other = tags
                    .pop()
                    .ok_or_else(|| DlibError::Unsupported("add_prev without a tag".into()))?;
                tags.clear();
                add_zero_padded(&mut g, &cur, &other)
            }
            Layer::Fc {
                outputs,
                inputs,
                weights,
                bias,
            } => {
                let (out, inp) = (*outputs as i64, *inputs as i64);
                if c * h * w != inp {
                    return Err(DlibError::Invalid(format!(
                        "fc_ expects {inp} inputs, got {:?}",
                        cur.shape
                    )));
                }
                let flat = g.node("Flatten", &[&cur.name], &[Attr::int("axis", 1)]);
                // dlib stores fc weights as [inputs, outputs]; Gemm wants [out, in] with transB.
                let mut wt = vec![0.0f32; weights.len()];
                for (idx, v) in weights.iter().enumerate() {
                    let (i, o) = (idx / *outputs as usize, idx % *outputs as usize);
                    wt[o * *inputs as usize + i] = *v;
                }
                let wname = g.constant_f32("fc_w", &[out, inp], &wt);
                let mut ins = vec![flat, wname];
                if let Some(b) = bias {
                    ins.push(g.constant_f32("fc_b", &[out], b));
                }
                let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
                let last = i + 1 == items.len();
                let name = if last {
                    g.node_named("Gemm", &refs, &[Attr::int("transB", 1)], "embedding");
                    "embedding".to_string()
                } else {
                    g.node("Gemm", &refs, &[Attr::int("transB", 1)])
                };
                embedding = Some(out);
                Value {
                    name,
                    shape: [out, 1, 1],
                }
            }
        };
    }
    let out = match (embedding, cur.name == "embedding") {
        (Some(n), true) => n,
        _ => {
            return Err(DlibError::Unsupported(
                "network must end in a fully connected layer".into(),
            ))
        }
    };
    g.output("embedding", &[BATCH, out]);
    g.metadata(
        "source",
        "dlib_face_recognition_resnet_model_v1.dat (dlib, CC0)",
    );
    g.metadata(
        "facegate.input",
        "input: float32 NCHW [1,3,150,150], RGB, raw 0..255 (mean/256 scaling inside)",
    );
    g.metadata(
        "facegate.output",
        "embedding: float32 [1,128], raw fc_no_bias output, compare by Euclidean distance",
    );
    g.metadata(
        "dlib.input_mean_rgb",
        &format!("{},{},{}", input.mean[0], input.mean[1], input.mean[2]),
    );
    g.metadata("dlib.loss_metric.margin", &margin.to_string());
    g.metadata(
        "dlib.loss_metric.distance_threshold",
        &dist_thresh.to_string(),
    );
    Ok(g.finish("facegate-models dlib converter"))
}

/// dlib's `add_prev`: `a + b` where a smaller operand is zero-extended at
/// the end of each dimension (`tt::add` with mismatched shapes).
fn add_zero_padded(g: &mut GraphBuilder, a: &Value, b: &Value) -> Value {
    let shape = [0, 1, 2].map(|i| a.shape[i].max(b.shape[i]));
    let pad = |g: &mut GraphBuilder, v: &Value| -> String {
        if v.shape == shape {
            return v.name.clone();
        }
        let pads = [
            0,
            0,
            0,
            0,
            0,
            shape[0] - v.shape[0],
            shape[1] - v.shape[1],
            shape[2] - v.shape[2],
        ];
        let p = g.constant_i64("pads", &[8], &pads);
        g.node("Pad", &[&v.name, &p], &[Attr::string("mode", "constant")])
    };
    let pa = pad(g, a);
    let pb = pad(g, b);
    Value {
        name: g.node("Add", &[&pa, &pb], &[]),
        shape,
    }
}
