//! A small, dependency-light ONNX writer.
//!
//! facegate converts every upstream model (dlib, legacy PyTorch, …) into ONNX
//! with its own code. This crate is the common target of those converters: the
//! protobuf schema ([`proto`]) and a [`GraphBuilder`] that names values,
//! stores initializers and emits a [`proto::ModelProto`].
//!
//! ```
//! use facegate_onnx::{Attr, GraphBuilder, Message};
//! let mut g = GraphBuilder::new("scale");
//! let x = g.input("x", &[1, 4]);
//! let two = g.constant_f32("two", &[1], &[2.0]);
//! let y = g.node("Mul", &[&x, &two], &[]);
//! g.output(&y, &[1, 4]);
//! let bytes = g.finish("doc-test").encode_to_vec();
//! assert!(!bytes.is_empty());
//! # let _ = Attr::int("unused", 0);
//! ```

#![warn(missing_docs)]

pub mod proto;

use proto::{
    AttributeProto, AttributeType, DataType, Dimension, DimensionValue, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto,
    TensorTypeProto, TypeProto, ValueInfoProto,
};

pub use prost::Message;

/// The ONNX opset every facegate converter targets. Opset 13 is supported by
/// both ONNX Runtime and tract and has every operator the face models need.
pub const OPSET: i64 = 13;
/// IR version matching [`OPSET`].
pub const IR_VERSION: i64 = 7;

/// A dimension for [`GraphBuilder::input`] and [`GraphBuilder::output`]:
/// the symbolic batch dimension `batch`, shared by every value that
/// declares it, so one run can carry several inputs.
pub const BATCH: i64 = i64::MIN;

/// The dimension [`BATCH`] stands for.
fn batch_dimension() -> Dimension {
    Dimension {
        value: Some(DimensionValue::DimParam("batch".into())),
    }
}

/// Makes the first dimension of each of `values` the symbolic `batch`
/// (for a graph read from elsewhere whose inputs and outputs were declared
/// at batch 1 but whose operators do not depend on it).
pub fn declare_symbolic_batch(values: &mut [ValueInfoProto]) {
    for v in values {
        let dims = v
            .r#type
            .as_mut()
            .and_then(|t| t.tensor_type.as_mut())
            .and_then(|t| t.shape.as_mut())
            .map(|s| &mut s.dim);
        if let Some(first) = dims.and_then(|d| d.first_mut()) {
            *first = batch_dimension();
        }
    }
}

/// One node attribute.
#[derive(Debug, Clone)]
pub struct Attr(AttributeProto);

impl Attr {
    /// An `INT` attribute, e.g. `group`.
    pub fn int(name: &str, value: i64) -> Self {
        Self(AttributeProto {
            name: name.into(),
            r#type: AttributeType::Int as i32,
            i: value,
            ..Default::default()
        })
    }
    /// An `INTS` attribute, e.g. `kernel_shape` or `pads`.
    pub fn ints(name: &str, values: &[i64]) -> Self {
        Self(AttributeProto {
            name: name.into(),
            r#type: AttributeType::Ints as i32,
            ints: values.to_vec(),
            ..Default::default()
        })
    }
    /// A `FLOAT` attribute, e.g. `epsilon` or `alpha`.
    pub fn float(name: &str, value: f32) -> Self {
        Self(AttributeProto {
            name: name.into(),
            r#type: AttributeType::Float as i32,
            f: value,
            ..Default::default()
        })
    }
    /// A `STRING` attribute, e.g. `mode`; stored as UTF-8 bytes.
    pub fn string(name: &str, value: &str) -> Self {
        Self(AttributeProto {
            name: name.into(),
            r#type: AttributeType::String as i32,
            s: value.as_bytes().to_vec(),
            ..Default::default()
        })
    }
}

/// Builds one ONNX graph. Values are referred to by the names it returns.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    graph: GraphProto,
    next_id: usize,
    metadata: Vec<StringStringEntryProto>,
}

fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| match d {
            BATCH => batch_dimension(),
            _ => Dimension {
                value: Some(if d < 0 {
                    DimensionValue::DimParam(format!("{name}_d{}", -d))
                } else {
                    DimensionValue::DimValue(d)
                }),
            },
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
        doc_string: String::new(),
    }
}

impl GraphBuilder {
    /// An empty graph called `name` (the name is informational only).
    pub fn new(name: &str) -> Self {
        Self {
            graph: GraphProto {
                name: name.into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.next_id += 1;
        format!("{hint}_{}", self.next_id)
    }

    /// Declares a float32 graph input. A negative dimension is symbolic;
    /// [`BATCH`] is the batch dimension.
    pub fn input(&mut self, name: &str, dims: &[i64]) -> String {
        self.graph.input.push(value_info(name, dims));
        name.into()
    }

    /// Declares a float32 graph output.
    pub fn output(&mut self, name: &str, dims: &[i64]) {
        self.graph.output.push(value_info(name, dims));
    }

    /// Stores a float32 initializer and returns its value name.
    pub fn constant_f32(&mut self, hint: &str, dims: &[i64], data: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<i64>() as usize, data.len());
        let name = self.fresh(hint);
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.graph.initializer.push(TensorProto {
            dims: dims.to_vec(),
            data_type: DataType::Float as i32,
            name: name.clone(),
            raw_data: raw,
            ..Default::default()
        });
        name
    }

    /// Stores an int64 initializer (shapes, axes) and returns its value name.
    pub fn constant_i64(&mut self, hint: &str, dims: &[i64], data: &[i64]) -> String {
        let name = self.fresh(hint);
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.graph.initializer.push(TensorProto {
            dims: dims.to_vec(),
            data_type: DataType::Int64 as i32,
            name: name.clone(),
            raw_data: raw,
            ..Default::default()
        });
        name
    }

    /// Adds a single-output node and returns the output's value name.
    pub fn node(&mut self, op_type: &str, inputs: &[&str], attrs: &[Attr]) -> String {
        let out = self.fresh(&op_type.to_ascii_lowercase());
        self.node_named(op_type, inputs, attrs, &out);
        out
    }

    /// Adds a single-output node whose output has a caller-chosen name
    /// (used for graph outputs).
    pub fn node_named(&mut self, op_type: &str, inputs: &[&str], attrs: &[Attr], output: &str) {
        let name = self.fresh(&format!("{op_type}_node"));
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name,
            op_type: op_type.into(),
            attribute: attrs.iter().map(|a| a.0.clone()).collect(),
            ..Default::default()
        });
    }

    /// Records a `metadata_props` entry on the model (source, version, …).
    pub fn metadata(&mut self, key: &str, value: &str) {
        self.metadata.push(StringStringEntryProto {
            key: key.into(),
            value: value.into(),
        });
    }

    /// 2-D convolution with weights `[out, in/group, kh, kw]` and an optional
    /// bias; `pads` is `[top, left, bottom, right]`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        x: &str,
        weight: &[f32],
        weight_dims: [i64; 4],
        bias: Option<&[f32]>,
        stride: i64,
        pads: [i64; 4],
        group: i64,
    ) -> String {
        let w = self.constant_f32("conv_w", &weight_dims, weight);
        let mut inputs = vec![x.to_string(), w];
        if let Some(b) = bias {
            inputs.push(self.constant_f32("conv_b", &[weight_dims[0]], b));
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.node(
            "Conv",
            &refs,
            &[
                Attr::ints("kernel_shape", &weight_dims[2..]),
                Attr::ints("strides", &[stride, stride]),
                Attr::ints("pads", &[pads[0], pads[1], pads[2], pads[3]]),
                Attr::int("group", group),
            ],
        )
    }

    /// Per-channel affine transform `y = x * scale[c] + shift[c]` on NCHW
    /// (how folded batch norms and dlib `affine` layers are expressed).
    pub fn channel_affine(&mut self, x: &str, scale: &[f32], shift: &[f32]) -> String {
        let c = scale.len() as i64;
        let s = self.constant_f32("affine_scale", &[1, c, 1, 1], scale);
        let b = self.constant_f32("affine_shift", &[1, c, 1, 1], shift);
        let y = self.node("Mul", &[x, &s], &[]);
        self.node("Add", &[&y, &b], &[])
    }

    /// PReLU with one slope per channel of an NCHW tensor.
    pub fn prelu(&mut self, x: &str, slopes: &[f32]) -> String {
        let a = self.constant_f32("prelu_slope", &[slopes.len() as i64, 1, 1], slopes);
        self.node("PRelu", &[x, &a], &[])
    }

    /// Fully connected layer `y = x · Wᵀ + b` for `x` of shape `[n, in]`
    /// and `weight` row-major `[out, in]`.
    pub fn dense(
        &mut self,
        x: &str,
        weight: &[f32],
        out: i64,
        inp: i64,
        bias: Option<&[f32]>,
    ) -> String {
        let w = self.constant_f32("dense_w", &[out, inp], weight);
        let mut inputs = vec![x.to_string(), w];
        if let Some(b) = bias {
            inputs.push(self.constant_f32("dense_b", &[out], b));
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.node("Gemm", &refs, &[Attr::int("transB", 1)])
    }

    /// Finishes the model with the given producer name.
    pub fn finish(self, producer: &str) -> ModelProto {
        ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: producer.into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(self.graph),
            metadata_props: self.metadata,
            ..Default::default()
        }
    }
}

/// Errors when reading an ONNX file with this schema.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The bytes are not a protobuf message of this schema (truncated,
    /// not ONNX, or a field with the wrong wire type).
    #[error("not a valid ONNX protobuf: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// Decodes an ONNX model (fields outside this schema are dropped).
pub fn decode(bytes: &[u8]) -> Result<ModelProto, OnnxError> {
    Ok(ModelProto::decode(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_protobuf() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", &[1, 3, -1, -1]);
        let y = g.conv(
            &x,
            &[1.0; 27],
            [1, 3, 3, 3],
            Some(&[0.5]),
            1,
            [1, 1, 1, 1],
            1,
        );
        g.node_named("Relu", &[&y], &[], "y");
        g.output("y", &[1, 1, -1, -1]);
        g.metadata("source", "unit-test");
        let model = g.finish("test");
        let decoded = decode(&model.encode_to_vec()).unwrap();
        assert_eq!(decoded, model);
        let graph = decoded.graph.unwrap();
        assert_eq!(graph.node.len(), 2);
        assert_eq!(graph.initializer.len(), 2);
        assert_eq!(graph.initializer[0].raw_data.len(), 27 * 4);
    }

    #[test]
    fn garbage_is_a_typed_error() {
        assert!(decode(&[0xff, 0xff, 0xff]).is_err());
    }
}
