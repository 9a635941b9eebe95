//! A small ONNX graph builder: named values, nodes with attributes, initializers from
//! tch tensors (fp32 or fp16 storage), and serialisation with optional external data.

use std::io::Write;
use std::path::Path;

use prost::Message;
use tch::{Kind, Tensor};

use super::proto::*;
use super::WeightType;
use crate::{Error, Result};

/// An attribute value.
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

pub struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    counter: usize,
    weights: WeightType,
}

/// A dimension of an input or output: fixed or named (dynamic).
pub enum Dim {
    Fixed(i64),
    Named(&'static str),
}

fn value_info(name: &str, elem: i32, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(v) => DimValue::DimValue(*v),
                Dim::Named(n) => DimValue::DimParam(n.to_string()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto { tensor_type: Some(TypeProtoTensor { elem_type: elem, shape: Some(TensorShapeProto { dim }) }) }),
    }
}

impl Graph {
    pub fn new(weights: WeightType) -> Self {
        Graph { nodes: Vec::new(), initializers: Vec::new(), inputs: Vec::new(), outputs: Vec::new(), counter: 0, weights }
    }

    pub fn input(&mut self, name: &str, elem: i32, dims: &[Dim]) -> String {
        self.inputs.push(value_info(name, elem, dims));
        name.to_string()
    }

    pub fn output(&mut self, name: &str, elem: i32, dims: &[Dim]) {
        self.outputs.push(value_info(name, elem, dims));
    }

    pub fn weights(&self) -> WeightType {
        self.weights
    }

    /// A new unique value name.
    pub fn fresh_name(&mut self, hint: &str) -> String {
        self.fresh(hint)
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}_{}", self.counter)
    }

    /// Adds a node with one output named after `hint` (or exactly `out` when given).
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)], hint: &str) -> String {
        let out = self.fresh(hint);
        self.node_into(op, inputs, attrs, &[&out]);
        out
    }

    /// Adds a node writing the given output names.
    pub fn node_into(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)], outputs: &[&str]) {
        let attribute = attrs
            .iter()
            .map(|(name, a)| {
                let mut p = AttributeProto { name: name.to_string(), ..Default::default() };
                match a {
                    Attr::Int(v) => (p.r#type, p.i) = (attr_type::INT, *v),
                    Attr::Ints(v) => (p.r#type, p.ints) = (attr_type::INTS, v.clone()),
                    Attr::Float(v) => (p.r#type, p.f) = (attr_type::FLOAT, *v),
                }
                p
            })
            .collect();
        let name = format!("{op}_{}", self.nodes.len());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name,
            op_type: op.into(),
            attribute,
            domain: String::new(),
        });
    }

    fn raw(&mut self, name: &str, dtype: i32, dims: Vec<i64>, raw_data: Vec<u8>) -> String {
        self.initializers.push(TensorProto { dims, data_type: dtype, name: name.into(), raw_data, ..Default::default() });
        name.to_string()
    }

    pub fn const_i64(&mut self, hint: &str, values: &[i64], dims: &[i64]) -> String {
        let name = self.fresh(hint);
        self.raw(&name, dtype::INT64, dims.to_vec(), values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    pub fn const_f32(&mut self, hint: &str, values: &[f32], dims: &[i64]) -> String {
        let name = self.fresh(hint);
        self.raw(&name, dtype::FLOAT, dims.to_vec(), values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    /// An int8 tensor (quantised weights), stored as it is.
    pub fn int8(&mut self, name: &str, t: &Tensor) -> Result<String> {
        let t = t.f_to_device(tch::Device::Cpu)?.f_contiguous()?;
        let numel = t.numel();
        let mut bytes = vec![0u8; numel];
        t.f_copy_data_u8(&mut bytes, numel)?;
        Ok(self.raw(name, dtype::INT8, t.size(), bytes))
    }

    /// An int32 tensor (a constant index table), stored as it is.
    pub fn int32(&mut self, name: &str, t: &Tensor) -> Result<String> {
        let t = t.f_to_device(tch::Device::Cpu)?.f_to_kind(Kind::Int)?.f_contiguous()?;
        let numel = t.numel();
        let mut bytes = vec![0u8; numel * 4];
        t.f_copy_data_u8(&mut bytes, numel)?;
        Ok(self.raw(name, dtype::INT32, t.size(), bytes))
    }

    /// A float weight named `name`. Matrices are stored in the chosen weight type (fp16
    /// followed by a Cast to fp32); vectors (biases, norms) always as fp32.
    pub fn weight(&mut self, name: &str, t: &Tensor) -> Result<String> {
        let t = t.f_detach()?.f_to_device(tch::Device::Cpu)?.f_contiguous()?;
        let dims = t.size();
        let half = self.weights == WeightType::Fp16 && dims.len() >= 2;
        let (kind, dtype) = if half { (Kind::Half, dtype::FLOAT16) } else { (Kind::Float, dtype::FLOAT) };
        let t = t.f_to_kind(kind)?;
        let numel = t.numel();
        let mut bytes = vec![0u8; numel * if half { 2 } else { 4 }];
        t.f_copy_data_u8(&mut bytes, numel)?;
        if half {
            let stored = self.raw(&format!("{name}.fp16"), dtype, dims, bytes);
            self.node_into("Cast", &[&stored], &[("to", Attr::Int(dtype::FLOAT as i64))], &[name]);
            Ok(name.to_string())
        } else {
            Ok(self.raw(name, dtype, dims, bytes))
        }
    }

    /// Serialises the model. With `external`, every initializer over 1 KiB goes into
    /// `<file name>.data` beside it (ONNX external data; required past protobuf's 2 GiB).
    pub fn write(mut self, path: &Path, opset: i64, ir_version: i64, doc: &str, meta: &[(&str, String)], external: bool) -> Result<()> {
        if external {
            let data_name = format!("{}.data", path.file_name().and_then(|n| n.to_str()).unwrap_or("model.onnx"));
            let data_path = path.with_file_name(&data_name);
            let mut f = std::io::BufWriter::new(std::fs::File::create(&data_path).map_err(|e| Error::io(&data_path, e))?);
            let mut offset = 0u64;
            for t in self.initializers.iter_mut().filter(|t| t.raw_data.len() > 1024) {
                // 4 KiB alignment lets ONNX Runtime map the file directly.
                let pad = (4096 - offset % 4096) % 4096;
                f.write_all(&vec![0u8; pad as usize]).map_err(|e| Error::io(&data_path, e))?;
                offset += pad;
                let len = t.raw_data.len() as u64;
                f.write_all(&t.raw_data).map_err(|e| Error::io(&data_path, e))?;
                let kv = |k: &str, v: String| StringStringEntryProto { key: k.into(), value: v };
                t.external_data = vec![kv("location", data_name.clone()), kv("offset", offset.to_string()), kv("length", len.to_string())];
                t.data_location = 1;
                t.raw_data = Vec::new();
                offset += len;
            }
            f.into_inner().map_err(|e| Error::io(&data_path, e.into_error()))?.sync_all().map_err(|e| Error::io(&data_path, e))?;
        }
        let model = ModelProto {
            ir_version,
            producer_name: "lmbff".into(),
            producer_version: crate::VERSION.into(),
            doc_string: doc.into(),
            graph: Some(GraphProto {
                node: self.nodes,
                name: "lmbff".into(),
                initializer: self.initializers,
                input: self.inputs,
                output: self.outputs,
                ..Default::default()
            }),
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: opset }],
            metadata_props: meta.iter().map(|(k, v)| StringStringEntryProto { key: k.to_string(), value: v.clone() }).collect(),
            ..Default::default()
        };
        let len = model.encoded_len();
        if len > i32::MAX as usize {
            return Err(Error::InvalidArgument(format!(
                "{}: the graph with its weights is {len} bytes, over protobuf's 2 GiB limit",
                path.display()
            )));
        }
        std::fs::write(path, model.encode_to_vec()).map_err(|e| Error::io(path, e))
    }
}
