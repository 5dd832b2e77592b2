//! SFace (OpenCV Zoo `face_recognition_sface_2021dec_int8bq.onnx`) → a plain
//! fp32 ONNX graph at opset 13.
//!
//! The upstream file is opset 21 and stores every convolution and the final
//! dense layer as int8 with block-wise `DequantizeLinear` (attribute
//! `block_size`: one scale and zero point per block of `block_size`
//! consecutive values along `axis`), followed by a `Reshape` to the
//! convolution's weight shape. It also still lists the pre-quantisation
//! weight names as graph inputs although no node reads them, and lists every
//! initializer as a graph input too (which makes them overridable, so
//! runtimes may not constant-fold them).
//!
//! The conversion evaluates the constant part of the graph in Rust:
//! * `DequantizeLinear` on initializers → an fp32 initializer computed as
//!   `(q - zero_point) * scale` per block, exactly as ONNX Runtime does it
//!   (integer difference, then one f32 multiplication);
//! * `Reshape` of a constant by a constant shape → the same data, new dims;
//! * `Constant` nodes → initializers; `Dropout` and `Identity` (inference
//!   no-ops) → their input;
//! * graph inputs that are initializers or that no node reads are dropped,
//!   leaving the one real input.
//!
//! Every remaining node must be an operator whose opset-13 definition is
//! the one the file uses (checked attribute by attribute); anything else is
//! an error rather than a silently different graph. Test: the converted
//! graph reproduces ONNX Runtime's outputs on the original file
//! (`tests/sface.rs`, reference from `tools/sface-reference`).
//!
//! ONNX contract of the result: input `data` `[batch, 3, 112, 112]` float32 NCHW,
//! values 0..255 (the graph itself subtracts 127.5 and scales by 1/128),
//! **RGB**: OpenCV's `FaceRecognizerSF::feature` calls
//! `blobFromImage(aligned, 1, Size(112, 112), Scalar(), swapRB=true)` on its
//! BGR image, and RGB measures better than BGR on LFW (docs/models.md);
//! output `fc1` `[batch, 128]`, not normalised.

use std::collections::{HashMap, HashSet};

use facegate_onnx::proto::{
    AttributeProto, DataType, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto,
};
use facegate_onnx::{declare_symbolic_batch, OnnxError, IR_VERSION, OPSET};

/// Name of the graph input.
pub const INPUT_NAME: &str = "data";
/// Name of the graph output (the 128-d embedding, not normalised).
pub const OUTPUT_NAME: &str = "fc1";
/// Side of the aligned face chip the network takes.
pub const INPUT_SIZE: usize = 112;
/// Length of the embedding.
pub const EMBEDDING_DIM: usize = 128;

/// Why the SFace file could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum SfaceError {
    /// The file is not a decodable ONNX model.
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    /// The file uses something the converter does not reproduce exactly.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The file is inconsistent (shapes, names, types).
    #[error("malformed model: {0}")]
    Malformed(String),
}

type Result<T> = std::result::Result<T, SfaceError>;

fn unsupported(msg: impl Into<String>) -> SfaceError {
    SfaceError::Unsupported(msg.into())
}

fn malformed(msg: impl Into<String>) -> SfaceError {
    SfaceError::Malformed(msg.into())
}

/// The converted model and what the conversion did.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The fp32 model, ready to encode.
    pub model: ModelProto,
    /// `DequantizeLinear` nodes evaluated into fp32 initializers.
    pub dequantized: usize,
    /// Graph inputs without an initializer that no node read, dropped.
    pub stale_inputs: Vec<String>,
    /// Opset of the source file.
    pub source_opset: i64,
}

/// A constant tensor's values.
#[derive(Debug, Clone, PartialEq)]
enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
    /// int8 or uint8, widened.
    Int(Vec<i32>),
}

#[derive(Debug, Clone, PartialEq)]
struct Const {
    dims: Vec<i64>,
    data: Data,
}

fn numel(dims: &[i64]) -> Result<usize> {
    dims.iter().try_fold(1usize, |acc, &d| {
        usize::try_from(d)
            .ok()
            .and_then(|d| acc.checked_mul(d))
            .ok_or_else(|| malformed(format!("bad dimensions {dims:?}")))
    })
}

fn raw_chunks<const N: usize>(raw: &[u8], name: &str) -> Result<Vec<[u8; N]>> {
    if !raw.len().is_multiple_of(N) {
        return Err(malformed(format!(
            "{name}: raw data of {} bytes is not a whole number of {N}-byte values",
            raw.len()
        )));
    }
    Ok(raw
        .chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            a
        })
        .collect())
}

impl Const {
    fn from_proto(t: &TensorProto) -> Result<Self> {
        let name = &t.name;
        if t.data_location != 0 || !t.external_data.is_empty() {
            return Err(unsupported(format!("{name}: external tensor data")));
        }
        let raw = !t.raw_data.is_empty();
        let data = match DataType::try_from(t.data_type) {
            Ok(DataType::Float) if raw => Data::F32(
                raw_chunks::<4>(&t.raw_data, name)?
                    .into_iter()
                    .map(f32::from_le_bytes)
                    .collect(),
            ),
            Ok(DataType::Float) => Data::F32(t.float_data.clone()),
            Ok(DataType::Int64) if raw => Data::I64(
                raw_chunks::<8>(&t.raw_data, name)?
                    .into_iter()
                    .map(i64::from_le_bytes)
                    .collect(),
            ),
            Ok(DataType::Int64) => Data::I64(t.int64_data.clone()),
            Ok(DataType::Int8) if raw => {
                Data::Int(t.raw_data.iter().map(|&b| i32::from(b as i8)).collect())
            }
            Ok(DataType::Uint8) if raw => {
                Data::Int(t.raw_data.iter().map(|&b| i32::from(b)).collect())
            }
            // int8 / uint8 without raw data are stored one per int32.
            Ok(DataType::Int8 | DataType::Uint8) => Data::Int(t.int32_data.clone()),
            _ => {
                return Err(unsupported(format!(
                    "{name}: tensor element type {}",
                    t.data_type
                )))
            }
        };
        let c = Self {
            dims: t.dims.clone(),
            data,
        };
        if c.len() != numel(&c.dims)? {
            return Err(malformed(format!(
                "{name}: {} values for dimensions {:?}",
                c.len(),
                c.dims
            )));
        }
        Ok(c)
    }

    fn len(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::Int(v) => v.len(),
        }
    }

    fn to_proto(&self, name: &str) -> Result<TensorProto> {
        let (data_type, raw_data) = match &self.data {
            Data::F32(v) => (
                DataType::Float,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            Data::I64(v) => (
                DataType::Int64,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            Data::Int(_) => {
                return Err(unsupported(format!(
                    "{name}: an integer tensor is read by a node other than DequantizeLinear"
                )))
            }
        };
        Ok(TensorProto {
            dims: self.dims.clone(),
            data_type: data_type as i32,
            name: name.into(),
            raw_data,
            ..Default::default()
        })
    }
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn attr_int(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map_or(default, |a| a.i)
}

/// `DequantizeLinear` (opsets 10–21): per-tensor, per-axis or blocked.
fn dequantize(
    node: &NodeProto,
    x: &Const,
    scale: &Const,
    zero_point: Option<&Const>,
) -> Result<Const> {
    let name = &node.name;
    let Data::Int(q) = &x.data else {
        return Err(unsupported(format!(
            "{name}: DequantizeLinear of a non-8-bit tensor"
        )));
    };
    let Data::F32(s) = &scale.data else {
        return Err(unsupported(format!("{name}: scale is not float32")));
    };
    let zeros;
    let zp: &[i32] = match zero_point {
        None => {
            zeros = vec![0; s.len()];
            &zeros
        }
        Some(Const {
            dims,
            data: Data::Int(z),
        }) if *dims == scale.dims => z,
        Some(_) => {
            return Err(malformed(format!(
                "{name}: zero point differs from the scale in type or shape"
            )))
        }
    };
    let rank = x.dims.len() as i64;
    let block_size = attr_int(node, "block_size", 0);
    let mut axis = attr_int(node, "axis", 1);
    if axis < 0 {
        axis += rank;
    }
    let per_tensor = s.len() == 1 && scale.dims.iter().all(|&d| d == 1) && block_size == 0;
    // For each element: the index of its scale.
    let scale_index: Box<dyn Fn(usize) -> usize> = if per_tensor {
        Box::new(|_| 0)
    } else {
        if !(0..rank).contains(&axis) || block_size < 0 {
            return Err(malformed(format!(
                "{name}: axis {axis} / block size {block_size} for rank {rank}"
            )));
        }
        let a = axis as usize;
        let inner: usize = numel(&x.dims[a + 1..])?;
        let d = x.dims[a] as usize;
        if block_size == 0 {
            // Per axis: a 1-D scale of the axis' length.
            if scale.dims != [x.dims[a]] {
                return Err(malformed(format!(
                    "{name}: per-axis scale of shape {:?} for axis length {d}",
                    scale.dims
                )));
            }
            Box::new(move |i| (i / inner) % d)
        } else {
            // Blocked: the scale has x's shape with the axis divided into
            // ceil(d / block_size) blocks.
            let bs = block_size as usize;
            let blocks = d.div_ceil(bs);
            let mut expected = x.dims.clone();
            expected[a] = blocks as i64;
            if scale.dims != expected {
                return Err(malformed(format!(
                    "{name}: blocked scale of shape {:?}, expected {expected:?}",
                    scale.dims
                )));
            }
            Box::new(move |i| {
                let outer = i / (inner * d);
                let along = (i / inner) % d;
                let within = i % inner;
                (outer * blocks + along / bs) * inner + within
            })
        }
    };
    let values = q
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let k = scale_index(i);
            // ONNX Runtime: float(int32(q) - int32(zp)) * scale.
            (v - zp[k]) as f32 * s[k]
        })
        .collect();
    Ok(Const {
        dims: x.dims.clone(),
        data: Data::F32(values),
    })
}

/// `Reshape` of a constant (opsets 5–21; `allowzero` from 14).
fn reshape(node: &NodeProto, x: &Const, shape: &Const) -> Result<Const> {
    let Data::I64(target) = &shape.data else {
        return Err(malformed(format!("{}: shape is not int64", node.name)));
    };
    let allow_zero = attr_int(node, "allowzero", 0) != 0;
    let total = x.len();
    let mut dims: Vec<i64> = target
        .iter()
        .enumerate()
        .map(|(i, &d)| match d {
            0 if !allow_zero => x.dims.get(i).copied().unwrap_or(0),
            d => d,
        })
        .collect();
    let inferred: Vec<usize> = (0..dims.len()).filter(|&i| dims[i] == -1).collect();
    if inferred.len() > 1 || dims.iter().any(|&d| d < -1) {
        return Err(malformed(format!("{}: shape {target:?}", node.name)));
    }
    if let [i] = inferred[..] {
        let known: i64 = dims.iter().filter(|&&d| d != -1).product();
        if known == 0 || total as i64 % known != 0 {
            return Err(malformed(format!("{}: cannot infer {target:?}", node.name)));
        }
        dims[i] = total as i64 / known;
    }
    if numel(&dims)? != total {
        return Err(malformed(format!(
            "{}: {total} values cannot take shape {dims:?}",
            node.name
        )));
    }
    Ok(Const {
        dims,
        data: x.data.clone(),
    })
}

/// Operators kept as nodes, with the attributes their opset-13 definitions
/// share with every later version up to 21. `training_mode` (BatchNorm,
/// opset 14+) and `allowzero` (Reshape, opset 14+) are accepted only at
/// their default, and then removed.
const KEPT_OPS: &[(&str, &[&str])] = &[
    (
        "Conv",
        &[
            "kernel_shape",
            "strides",
            "pads",
            "dilations",
            "group",
            "auto_pad",
        ],
    ),
    ("BatchNormalization", &["epsilon", "momentum"]),
    ("PRelu", &[]),
    ("Relu", &[]),
    ("Sigmoid", &[]),
    ("Add", &[]),
    ("Sub", &[]),
    ("Mul", &[]),
    ("Flatten", &["axis"]),
    ("Gemm", &["alpha", "beta", "transA", "transB"]),
    ("Reshape", &[]),
    ("GlobalAveragePool", &[]),
];

/// Checks a node that stays in the graph and strips attributes that are at
/// their default but unknown to opset 13.
fn keep_node(mut node: NodeProto) -> Result<NodeProto> {
    let Some((_, allowed)) = KEPT_OPS.iter().find(|(op, _)| *op == node.op_type) else {
        return Err(unsupported(format!(
            "operator {} (node {}) is not supported by the conversion",
            node.op_type, node.name
        )));
    };
    let mut kept = Vec::new();
    for a in node.attribute.drain(..) {
        match (node.op_type.as_str(), a.name.as_str()) {
            ("BatchNormalization", "training_mode") | ("Reshape", "allowzero") if a.i == 0 => {}
            ("Conv", "auto_pad") if !(a.s.is_empty() || a.s == b"NOTSET") => {
                return Err(unsupported(format!("{}: auto_pad", node.name)))
            }
            (_, name) if allowed.contains(&name) => kept.push(a),
            (op, name) => {
                return Err(unsupported(format!(
                    "{op} node {}: attribute {name}",
                    node.name
                )))
            }
        }
    }
    node.attribute = kept;
    Ok(node)
}

/// Converts the SFace file (any opset from 13 to 21) to opset 13 fp32.
pub fn convert(bytes: &[u8]) -> Result<Converted> {
    let source = facegate_onnx::decode(bytes)?;
    let mut source_opset = None;
    for o in &source.opset_import {
        match o.domain.as_str() {
            "" | "ai.onnx" => source_opset = Some(o.version),
            other => return Err(unsupported(format!("operator domain {other:?}"))),
        }
    }
    let source_opset = source_opset.ok_or_else(|| malformed("no default opset"))?;
    if !(OPSET..=21).contains(&source_opset) {
        return Err(unsupported(format!("opset {source_opset}")));
    }
    let graph = source.graph.as_ref().ok_or_else(|| malformed("no graph"))?;

    let mut consts: HashMap<String, Const> = HashMap::new();
    for t in &graph.initializer {
        consts.insert(t.name.clone(), Const::from_proto(t)?);
    }
    // Values replaced by another value (inference no-ops).
    let mut alias: HashMap<String, String> = HashMap::new();
    let resolve = |alias: &HashMap<String, String>, name: &str| -> String {
        let mut n = name.to_string();
        while let Some(next) = alias.get(&n) {
            n = next.clone();
        }
        n
    };
    let mut nodes = Vec::new();
    let mut dequantized = 0;
    for node in &graph.node {
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(unsupported(format!("node domain {:?}", node.domain)));
        }
        let mut node = node.clone();
        for input in &mut node.input {
            if !input.is_empty() {
                *input = resolve(&alias, input);
            }
        }
        let constant = |i: usize| -> Option<&Const> {
            node.input
                .get(i)
                .filter(|n| !n.is_empty())
                .and_then(|n| consts.get(n))
        };
        let single_output = || -> Result<String> {
            match &node.output[..] {
                [out] => Ok(out.clone()),
                _ => Err(malformed(format!(
                    "{} node {}: expected one output",
                    node.op_type, node.name
                ))),
            }
        };
        match node.op_type.as_str() {
            "DequantizeLinear" => {
                let (Some(x), Some(scale)) = (constant(0), constant(1)) else {
                    return Err(unsupported(format!(
                        "{}: DequantizeLinear of a computed value",
                        node.name
                    )));
                };
                let zp = match node.input.get(2).filter(|n| !n.is_empty()) {
                    Some(_) => Some(constant(2).ok_or_else(|| {
                        unsupported(format!("{}: computed zero point", node.name))
                    })?),
                    None => None,
                };
                if attr_int(&node, "output_dtype", 0) != 0 {
                    return Err(unsupported(format!("{}: output_dtype", node.name)));
                }
                let value = dequantize(&node, x, scale, zp)?;
                consts.insert(single_output()?, value);
                dequantized += 1;
            }
            "Reshape" if constant(0).is_some() && constant(1).is_some() => {
                let value = reshape(&node, constant(0).unwrap(), constant(1).unwrap())?;
                consts.insert(single_output()?, value);
            }
            "Constant" => {
                let t = match &node.attribute[..] {
                    [a] if a.name == "value" => a.t.as_ref(),
                    _ => None,
                }
                .ok_or_else(|| unsupported(format!("{}: Constant without a tensor", node.name)))?;
                consts.insert(single_output()?, Const::from_proto(t)?);
            }
            "Dropout" | "Identity" => {
                // Inference: the output is the input. Dropout's optional
                // mask output must be unused.
                let input = node
                    .input
                    .first()
                    .ok_or_else(|| malformed(format!("{}: no input", node.name)))?;
                let read_later = |name: &String| {
                    graph.node.iter().any(|n| n.input.contains(name))
                        || graph.output.iter().any(|o| &o.name == name)
                };
                if node.output.iter().skip(1).any(read_later) {
                    return Err(unsupported(format!("{}: Dropout mask is used", node.name)));
                }
                if node.input.get(2).is_some_and(|n| !n.is_empty()) {
                    return Err(unsupported(format!("{}: training_mode input", node.name)));
                }
                let out = node
                    .output
                    .first()
                    .ok_or_else(|| malformed(format!("{}: no output", node.name)))?;
                alias.insert(out.clone(), input.clone());
            }
            _ => nodes.push(keep_node(node)?),
        }
    }

    // Graph outputs must be computed by kept nodes (not aliases or consts).
    let produced: HashSet<&str> = nodes
        .iter()
        .flat_map(|n| n.output.iter().map(String::as_str))
        .collect();
    for o in &graph.output {
        if !produced.contains(o.name.as_str()) {
            return Err(unsupported(format!(
                "graph output {} is not computed by a kept node",
                o.name
            )));
        }
    }
    let read: HashSet<&str> = nodes
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .filter(|n| !n.is_empty())
        .collect();
    let mut inputs = Vec::new();
    let mut stale_inputs = Vec::new();
    for i in &graph.input {
        if consts.contains_key(&i.name) {
            continue; // an initializer listed as an input
        }
        if read.contains(i.name.as_str()) {
            inputs.push(i.clone());
        } else {
            stale_inputs.push(i.name.clone());
        }
    }
    let input_names: HashSet<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
    // Initializers in the order nodes first read them.
    let mut initializer = Vec::new();
    let mut emitted = HashSet::new();
    for node in &nodes {
        for name in node.input.iter().filter(|n| !n.is_empty()) {
            if let Some(c) = consts.get(name) {
                if emitted.insert(name.clone()) {
                    initializer.push(c.to_proto(name)?);
                }
            } else if !produced.contains(name.as_str()) && !input_names.contains(name.as_str()) {
                return Err(malformed(format!(
                    "node {} reads {name}, which nothing defines",
                    node.name
                )));
            }
        }
    }

    // The network is convolutions, element-wise ops, Flatten and Gemm: none
    // depends on the batch size, so the batch dimension is made symbolic
    // for batched runs. A kept Reshape could have the batch baked into its
    // shape; then the graph stays at batch 1.
    let mut outputs = graph.output.clone();
    let batchable = !nodes.iter().any(|n| n.op_type == "Reshape");
    if batchable {
        declare_symbolic_batch(&mut inputs);
        declare_symbolic_batch(&mut outputs);
    }

    let model = ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "facegate-models/sface".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(GraphProto {
            node: nodes,
            name: if graph.name.is_empty() {
                "sface".into()
            } else {
                graph.name.clone()
            },
            initializer,
            input: inputs,
            output: outputs,
            ..Default::default()
        }),
        metadata_props: [
            ("architecture", "SFace (MobileFaceNet), OpenCV Zoo face_recognition_sface_2021dec"),
            (
                "input",
                "data [batch,3,112,112] float32 NCHW 0..255 RGB",
            ),
            ("output", "fc1 [batch,128], not normalised; compare by cosine"),
            (
                "conversion",
                "int8 block-wise DequantizeLinear evaluated to fp32 by facegate; opset lowered to 13",
            ),
            (
                "source",
                "face_recognition_sface_2021dec_int8bq.onnx from OpenCV Zoo, Apache-2.0",
            ),
        ]
        .iter()
        .map(|(k, v)| StringStringEntryProto {
            key: (*k).into(),
            value: (*v).into(),
        })
        .collect(),
        ..Default::default()
    };
    Ok(Converted {
        model,
        dequantized,
        stale_inputs,
        source_opset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str, attrs: &[(&str, i64)]) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            name: "n".into(),
            attribute: attrs
                .iter()
                .map(|(k, v)| AttributeProto {
                    name: (*k).into(),
                    i: *v,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn blocked_dequantisation_uses_one_scale_per_block() {
        // 2 x 5 along axis 1 in blocks of 2: blocks [0,1], [2,3], [4].
        let x = Const {
            dims: vec![2, 5],
            data: Data::Int(vec![1, 2, 3, 4, 5, -1, -2, -3, -4, -5]),
        };
        let scale = Const {
            dims: vec![2, 3],
            data: Data::F32(vec![1.0, 10.0, 100.0, 0.5, 0.25, 2.0]),
        };
        let zp = Const {
            dims: vec![2, 3],
            data: Data::Int(vec![0, 1, 0, 0, 0, -5]),
        };
        let n = node("DequantizeLinear", &[("axis", 1), ("block_size", 2)]);
        let y = dequantize(&n, &x, &scale, Some(&zp)).unwrap();
        assert_eq!(
            y.data,
            Data::F32(vec![
                1.0, 2.0, 20.0, 30.0, 500.0, -0.5, -1.0, -0.75, -1.0, 0.0
            ])
        );
        // Along axis 0 in blocks of 1 (per row).
        let scale0 = Const {
            dims: vec![2, 5],
            data: Data::F32(vec![2.0; 10]),
        };
        let n0 = node("DequantizeLinear", &[("axis", 0), ("block_size", 1)]);
        let y0 = dequantize(&n0, &x, &scale0, None).unwrap();
        assert_eq!(y0.dims, vec![2, 5]);
        let wrong = Const {
            dims: vec![2, 2],
            data: Data::F32(vec![1.0; 4]),
        };
        assert!(dequantize(&n, &x, &wrong, None).is_err());
    }

    #[test]
    fn per_axis_and_per_tensor_dequantisation() {
        let x = Const {
            dims: vec![2, 2],
            data: Data::Int(vec![1, 2, 3, 4]),
        };
        let per_axis = Const {
            dims: vec![2],
            data: Data::F32(vec![1.0, 10.0]),
        };
        let y = dequantize(
            &node("DequantizeLinear", &[("axis", 0)]),
            &x,
            &per_axis,
            None,
        )
        .unwrap();
        assert_eq!(y.data, Data::F32(vec![1.0, 2.0, 30.0, 40.0]));
        let scalar = Const {
            dims: vec![],
            data: Data::F32(vec![0.5]),
        };
        let y = dequantize(&node("DequantizeLinear", &[]), &x, &scalar, None).unwrap();
        assert_eq!(y.data, Data::F32(vec![0.5, 1.0, 1.5, 2.0]));
    }

    #[test]
    fn constant_reshape_infers_and_copies_dimensions() {
        let x = Const {
            dims: vec![4, 9],
            data: Data::F32(vec![0.0; 36]),
        };
        let shape = Const {
            dims: vec![4],
            data: Data::I64(vec![0, 1, 3, -1]),
        };
        let y = reshape(&node("Reshape", &[]), &x, &shape).unwrap();
        assert_eq!(y.dims, vec![4, 1, 3, 3]);
        let bad = Const {
            dims: vec![1],
            data: Data::I64(vec![5]),
        };
        assert!(reshape(&node("Reshape", &[]), &x, &bad).is_err());
    }

    #[test]
    fn unknown_operators_and_attributes_are_refused() {
        assert!(keep_node(node("LSTM", &[])).is_err());
        assert!(keep_node(node("Conv", &[("group", 1)])).is_ok());
        assert!(keep_node(node("Gemm", &[("mystery", 1)])).is_err());
        let bn = keep_node(node("BatchNormalization", &[("training_mode", 0)])).unwrap();
        assert!(bn.attribute.is_empty());
        assert!(keep_node(node("BatchNormalization", &[("training_mode", 1)])).is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(convert(&[0xff, 0xff, 0xff]).is_err());
        assert!(convert(&[]).is_err());
    }
}
