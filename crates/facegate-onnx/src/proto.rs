//! The subset of `onnx.proto3` that facegate's converters write and read.
//!
//! Field numbers follow the official schema exactly, so the bytes are a valid
//! ONNX model for every runtime. Fields facegate never uses are left out;
//! decoding a foreign model with this schema drops them.

/// A whole model file: IR version, opset imports, producer metadata and the graph.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    /// ONNX IR version of the file format (facegate writes [`crate::IR_VERSION`]).
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    /// Operator sets the graph uses; the default domain entry fixes the semantics of every node.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// Tool that wrote the model (what the converter passed to [`crate::GraphBuilder::finish`]).
    #[prost(string, tag = "2")]
    pub producer_name: String,
    /// Version of that tool (facegate writes its crate version).
    #[prost(string, tag = "3")]
    pub producer_version: String,
    /// Reverse-DNS namespace of the model; usually empty.
    #[prost(string, tag = "4")]
    pub domain: String,
    /// Version of the model itself; unused by facegate.
    #[prost(int64, tag = "5")]
    pub model_version: i64,
    /// Free-form description; facegate leaves it empty and records provenance in
    /// [`metadata_props`](Self::metadata_props).
    #[prost(string, tag = "6")]
    pub doc_string: String,
    /// The computation; `None` only in a malformed file.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// Key/value metadata that runtimes ignore and readers may use.
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// One imported operator set: a domain and its opset version.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    /// Operator domain; empty means the default `ai.onnx` domain.
    #[prost(string, tag = "1")]
    pub domain: String,
    /// Opset version within that domain.
    #[prost(int64, tag = "2")]
    pub version: i64,
}

/// A string key/value pair (metadata, external-data locations).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringEntryProto {
    /// The key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// The value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// A dataflow graph: nodes in topological order, their weights, inputs and outputs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    /// Nodes in topological order (every input is produced before it is used).
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// Graph name, informational.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Constant tensors (weights), referenced by name from node inputs.
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// Free-form description.
    #[prost(string, tag = "10")]
    pub doc_string: String,
    /// Graph inputs with their types and shapes.
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// Graph outputs with their types and shapes.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    /// Optional type/shape information for intermediate values.
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
}

/// One operator application: inputs and outputs by value name, attributes by name.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    /// Names of the values consumed; an empty string marks an omitted optional input.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Names of the values produced; each must be unique in the graph.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// Node name, informational (helps in runtime error messages).
    #[prost(string, tag = "3")]
    pub name: String,
    /// Operator name, e.g. `"Conv"`.
    #[prost(string, tag = "4")]
    pub op_type: String,
    /// Operator domain; empty for the default `ai.onnx` domain.
    #[prost(string, tag = "7")]
    pub domain: String,
    /// Static parameters of the operator.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    /// Free-form description.
    #[prost(string, tag = "6")]
    pub doc_string: String,
}

/// `AttributeProto.AttributeType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum AttributeType {
    /// Not set; invalid in a well-formed model.
    Undefined = 0,
    /// A single `f32` in [`AttributeProto::f`].
    Float = 1,
    /// A single `i64` in [`AttributeProto::i`].
    Int = 2,
    /// Bytes in [`AttributeProto::s`].
    String = 3,
    /// A tensor in [`AttributeProto::t`].
    Tensor = 4,
    /// A subgraph (not written by facegate).
    Graph = 5,
    /// A list of `f32` in [`AttributeProto::floats`].
    Floats = 6,
    /// A list of `i64` in [`AttributeProto::ints`].
    Ints = 7,
    /// A list of byte strings in [`AttributeProto::strings`].
    Strings = 8,
    /// A list of tensors (not written by facegate).
    Tensors = 9,
    /// A list of subgraphs (not written by facegate).
    Graphs = 10,
}

/// A named operator attribute; [`type`](Self::type) says which value field is meaningful.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    /// Attribute name as the operator defines it, e.g. `"kernel_shape"`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// An [`AttributeType`] as `i32`: which of the value fields below holds the value.
    #[prost(enumeration = "AttributeType", tag = "20")]
    pub r#type: i32,
    /// Value of a `FLOAT` attribute.
    #[prost(float, tag = "2")]
    pub f: f32,
    /// Value of an `INT` attribute.
    #[prost(int64, tag = "3")]
    pub i: i64,
    /// Value of a `STRING` attribute (UTF-8 by convention, bytes on the wire).
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    /// Value of a `TENSOR` attribute.
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    /// Value of a `FLOATS` attribute.
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    /// Value of an `INTS` attribute.
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    /// Value of a `STRINGS` attribute.
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
}

/// `TensorProto.DataType`, the element types facegate writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DataType {
    /// Not set; invalid in a well-formed tensor.
    Undefined = 0,
    /// 32-bit IEEE float.
    Float = 1,
    /// Unsigned 8-bit integer.
    Uint8 = 2,
    /// Signed 8-bit integer.
    Int8 = 3,
    /// Signed 32-bit integer.
    Int32 = 6,
    /// Signed 64-bit integer (shapes, indices).
    Int64 = 7,
    /// 16-bit IEEE half float.
    Float16 = 10,
}

/// A tensor value: dimensions, element type and the data, either in a typed repeated field or as
/// little-endian [`raw_data`](Self::raw_data).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// Dimensions, outermost first; empty for a scalar.
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    /// A [`DataType`] as `i32`.
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    /// Elements of a `FLOAT` tensor when not in `raw_data`.
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    /// Elements of `INT32`, `INT8`, `UINT8` and `FLOAT16` (as bit patterns) tensors when not in
    /// `raw_data`, one element per `i32`.
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    /// Elements of an `INT64` tensor when not in `raw_data`.
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    /// Name by which nodes refer to this tensor when it is an initializer.
    #[prost(string, tag = "8")]
    pub name: String,
    /// All elements as little-endian bytes; when non-empty the typed fields are empty. facegate
    /// writes weights this way because it is compact and fast to load.
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
    /// Elements of a `DOUBLE` tensor when not in `raw_data`.
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    /// Where the data lives when it is not in this message; a reader of
    /// this schema must refuse such tensors rather than see them empty.
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    /// `DataLocation`: 0 = DEFAULT (in this message), 1 = EXTERNAL.
    #[prost(int32, tag = "14")]
    pub data_location: i32,
}

/// Name, type and shape of a graph input, output or intermediate value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    /// Value name, as used by node inputs and outputs.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Element type and shape; `None` when unknown.
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
    /// Free-form description.
    #[prost(string, tag = "3")]
    pub doc_string: String,
}

/// The type of a value; only tensor types are modelled.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    /// Set for tensor values (the only kind facegate uses).
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TensorTypeProto>,
}

/// A tensor type: element type and (possibly symbolic) shape.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorTypeProto {
    /// A [`DataType`] as `i32`.
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    /// The shape; `None` means unknown rank.
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

/// A tensor shape, one entry per axis.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// Axes, outermost first.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

/// One axis of a shape: a fixed size, a symbolic name, or unknown.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dimension {
    /// The size or its symbolic name; `None` when unknown.
    #[prost(oneof = "DimensionValue", tags = "1, 2")]
    pub value: Option<DimensionValue>,
}

/// The two ways an axis size can be given.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum DimensionValue {
    /// A fixed size.
    #[prost(int64, tag = "1")]
    DimValue(i64),
    /// A symbolic size such as `"batch"`, bound when the model runs.
    #[prost(string, tag = "2")]
    DimParam(String),
}
