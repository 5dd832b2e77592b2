//! MiniFASNet (Silent-Face-Anti-Spoofing) state dict → ONNX.
//!
//! One converter serves MiniFASNetV2 and MiniFASNetV1SE: the skeleton (stage
//! order, strides, shortcuts) is fixed by the architecture, while every
//! channel width, kernel size, block count and the presence of SE modules is
//! read from the tensors themselves. BatchNorm is folded into the preceding
//! convolution, and `linear` + `bn` into one Gemm, so the graph is only
//! Conv / PRelu / Add / (SE: GlobalAveragePool, Relu, Sigmoid, Mul) /
//! Flatten / Gemm / Softmax.
//!
//! ONNX contract: input `input` `[batch, 3, 80, 80]` float32, NCHW, **BGR**,
//! values 0..255 without normalisation; output `probs` `[batch, 3]`, the softmax
//! of the logits, class 1 = real face.

use std::collections::{BTreeMap, BTreeSet};

use facegate_onnx::proto::ModelProto;
use facegate_onnx::{Attr, GraphBuilder, BATCH};

use crate::torch_legacy::{read_state_dict, Tensor, TorchError};

/// Name of the graph input.
pub const INPUT_NAME: &str = "input";
/// Name of the graph output (softmax probabilities, class 1 = real).
pub const OUTPUT_NAME: &str = "probs";
/// Input height and width the upstream models were trained on.
pub const INPUT_SIZE: usize = 80;
/// PyTorch's BatchNorm default; it is not stored in the state dict.
const BN_EPS: f64 = 1e-5;

/// Why a MiniFASNet state dict could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum MiniFasNetError {
    /// The `.pth` file could not be read.
    #[error(transparent)]
    Torch(#[from] TorchError),
    /// A tensor the architecture needs is absent.
    #[error("tensor {0} is missing")]
    Missing(String),
    /// A tensor has a shape that does not fit its place in the network.
    #[error("tensor {name} has shape {got:?}, expected {expected}")]
    Shape {
        /// State-dict key of the tensor.
        name: String,
        /// Its shape in the file.
        got: Vec<usize>,
        /// The shape the architecture needs there, as text.
        expected: String,
    },
    /// The state dict holds a tensor the converter would silently drop.
    #[error("tensor {0} is not used by the MiniFASNet architecture")]
    Unused(String),
    /// The tensors describe a network other than MiniFASNet.
    #[error("architecture mismatch: {0}")]
    Architecture(String),
}

type Result<T> = std::result::Result<T, MiniFasNetError>;

/// Reads a legacy `.pth` MiniFASNet file and converts it to ONNX.
/// `variant_name` (e.g. `MiniFASNetV2`) names the graph and is recorded in
/// the metadata; the architecture itself is detected from the tensors.
pub fn convert(bytes: &[u8], variant_name: &str) -> Result<ModelProto> {
    let sd = read_state_dict(bytes)?;
    convert_state_dict(&sd, variant_name)
}

/// Converts an already parsed state dict (keys without `module.`).
pub fn convert_state_dict(sd: &BTreeMap<String, Tensor>, variant_name: &str) -> Result<ModelProto> {
    let mut b = Builder {
        sd,
        used: BTreeSet::new(),
        g: GraphBuilder::new(variant_name),
        se_blocks: 0,
    };
    let n = INPUT_SIZE as i64;
    let x = b.g.input(INPUT_NAME, &[BATCH, 3, n, n]);
    let mut f = Feature {
        name: x,
        channels: 3,
        size: INPUT_SIZE,
    };

    f = b.conv_block("conv1", &f, 2, true, true)?;
    f = b.conv_block("conv2_dw", &f, 1, true, true)?;
    for (down, stage) in [
        ("conv_23", "conv_3"),
        ("conv_34", "conv_4"),
        ("conv_45", "conv_5"),
    ] {
        f = b.dw_block(down, &f, 2, false)?;
        let mut i = 0;
        while b.has_prefix(&format!("{stage}.model.{i}.")) {
            f = b.dw_block(&format!("{stage}.model.{i}"), &f, 1, true)?;
            i += 1;
        }
        if i == 0 {
            return Err(MiniFasNetError::Architecture(format!(
                "stage {stage} has no blocks"
            )));
        }
    }
    f = b.conv_block("conv_6_sep", &f, 1, true, true)?;
    // The global depthwise conv has no padding: its kernel spans the map.
    f = b.conv_block("conv_6_dw", &f, 1, false, false)?;
    if f.size != 1 {
        return Err(MiniFasNetError::Architecture(format!(
            "conv_6_dw leaves a {0}x{0} map, expected 1x1",
            f.size
        )));
    }
    let flat = b.g.node("Flatten", &[&f.name], &[Attr::int("axis", 1)]);
    let hidden = b.linear_bn(&flat, f.channels)?;
    let prob = b.take("prob.weight")?;
    let (classes, inp) = dims2(prob, "prob.weight")?;
    if inp != hidden.1 {
        return Err(shape_err("prob.weight", prob, format!("[_, {}]", hidden.1)));
    }
    let logits =
        b.g.dense(&hidden.0, &prob.data, classes as i64, inp as i64, None);
    b.g.node_named("Softmax", &[&logits], &[Attr::int("axis", 1)], OUTPUT_NAME);
    b.g.output(OUTPUT_NAME, &[BATCH, classes as i64]);

    if let Some(unused) = sd.keys().find(|k| !b.used.contains(k.as_str())) {
        return Err(MiniFasNetError::Unused(unused.clone()));
    }
    let se_blocks = b.se_blocks;
    let mut g = b.g;
    g.metadata("architecture", variant_name);
    g.metadata("se_blocks", &se_blocks.to_string());
    g.metadata("input", "input [1,3,80,80] float32 NCHW BGR 0..255");
    g.metadata("output", "probs [1,3] softmax, class 1 = real face");
    g.metadata(
        "source",
        "MiniFASNet weights from minivision-ai/Silent-Face-Anti-Spoofing, Apache-2.0",
    );
    Ok(g.finish("facegate-models/minifasnet"))
}

/// The crop scale encoded in an upstream file name: the first `_` field
/// (`2.7_80x80_MiniFASNetV2.pth` → 2.7, `4_0_0_80x80_…` → 4.0), as upstream
/// parses it.
pub fn crop_scale_from_file_name(file_name: &str) -> Option<f32> {
    let first = file_name.split('_').next()?;
    first
        .parse::<f32>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
}

/// A value in the graph with its (square) spatial size.
struct Feature {
    name: String,
    channels: usize,
    size: usize,
}

struct Builder<'a> {
    sd: &'a BTreeMap<String, Tensor>,
    used: BTreeSet<&'a str>,
    g: GraphBuilder,
    se_blocks: usize,
}

fn shape_err(name: &str, t: &Tensor, expected: String) -> MiniFasNetError {
    MiniFasNetError::Shape {
        name: name.into(),
        got: t.shape.clone(),
        expected,
    }
}

fn dims2(t: &Tensor, name: &str) -> Result<(usize, usize)> {
    match t.shape.as_slice() {
        &[a, b] => Ok((a, b)),
        _ => Err(shape_err(name, t, "rank 2".into())),
    }
}

/// BatchNorm as `y = x * scale + shift`, computed in f64.
struct Bn {
    scale: Vec<f64>,
    shift: Vec<f64>,
}

impl<'a> Builder<'a> {
    fn has_prefix(&self, prefix: &str) -> bool {
        self.sd
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .next()
            .is_some_and(|(k, _)| k.starts_with(prefix))
    }

    fn take(&mut self, name: &str) -> Result<&'a Tensor> {
        let sd: &'a BTreeMap<String, Tensor> = self.sd;
        let (k, t) = sd
            .get_key_value(name)
            .ok_or_else(|| MiniFasNetError::Missing(name.into()))?;
        // The fields are public, so a hand-built tensor may be inconsistent.
        let numel = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if numel != Some(t.data.len()) {
            return Err(shape_err(name, t, format!("{} elements", t.data.len())));
        }
        self.used.insert(k.as_str());
        Ok(t)
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<&'a [f32]> {
        let t = self.take(name)?;
        if t.shape != [len] {
            return Err(shape_err(name, t, format!("[{len}]")));
        }
        Ok(&t.data)
    }

    fn bn(&mut self, prefix: &str, channels: usize) -> Result<Bn> {
        let gamma = self.vector(&format!("{prefix}.weight"), channels)?;
        let beta = self.vector(&format!("{prefix}.bias"), channels)?;
        let mean = self.vector(&format!("{prefix}.running_mean"), channels)?;
        let var = self.vector(&format!("{prefix}.running_var"), channels)?;
        let mut scale = Vec::with_capacity(channels);
        let mut shift = Vec::with_capacity(channels);
        for c in 0..channels {
            let s = f64::from(gamma[c]) / (f64::from(var[c]) + BN_EPS).sqrt();
            scale.push(s);
            shift.push(f64::from(beta[c]) - f64::from(mean[c]) * s);
        }
        Ok(Bn { scale, shift })
    }

    /// Conv (no bias) + BatchNorm folded into one Conv, then PReLU if `act`.
    /// Groups come from the weight shape: 1 (dense) or `channels` (depthwise).
    fn conv_block(
        &mut self,
        prefix: &str,
        x: &Feature,
        stride: usize,
        pad: bool,
        act: bool,
    ) -> Result<Feature> {
        let wname = format!("{prefix}.conv.weight");
        let w = self.take(&wname)?;
        let &[out, per_group, kh, kw] = w.shape.as_slice() else {
            return Err(shape_err(&wname, w, "rank 4".into()));
        };
        let group = if per_group == x.channels {
            1
        } else if per_group == 1 && out == x.channels {
            x.channels
        } else {
            return Err(shape_err(
                &wname,
                w,
                format!("[_, {} or 1, k, k]", x.channels),
            ));
        };
        if kh != kw || kh == 0 || kh % 2 == 0 || kh > x.size {
            return Err(shape_err(
                &wname,
                w,
                "an odd square kernel no larger than the map".into(),
            ));
        }
        let p = if pad { kh / 2 } else { 0 };
        let size = (x.size + 2 * p - kh) / stride + 1;

        let bn = self.bn(&format!("{prefix}.bn"), out)?;
        let (weight, bias) = fold_rows(&w.data, out, &bn);
        let pi = p as i64;
        let mut y = self.g.conv(
            &x.name,
            &weight,
            [out as i64, per_group as i64, kh as i64, kw as i64],
            Some(&bias),
            stride as i64,
            [pi, pi, pi, pi],
            group as i64,
        );
        if act {
            let slopes = self.vector(&format!("{prefix}.prelu.weight"), out)?;
            y = self.g.prelu(&y, slopes);
        }
        Ok(Feature {
            name: y,
            channels: out,
            size,
        })
    }

    /// Expand 1x1 → depthwise 3x3 (stride `stride`) → project 1x1, with an
    /// optional SE on the projection and an identity shortcut when `residual`.
    fn dw_block(
        &mut self,
        prefix: &str,
        x: &Feature,
        stride: usize,
        residual: bool,
    ) -> Result<Feature> {
        let e = self.conv_block(&format!("{prefix}.conv"), x, 1, true, true)?;
        let d = self.conv_block(&format!("{prefix}.conv_dw"), &e, stride, true, true)?;
        if d.channels != e.channels {
            return Err(MiniFasNetError::Architecture(format!(
                "{prefix}.conv_dw is not depthwise"
            )));
        }
        let mut p = self.conv_block(&format!("{prefix}.project"), &d, 1, true, false)?;
        let se = format!("{prefix}.se_module.");
        if self.has_prefix(&se) {
            if !residual {
                return Err(MiniFasNetError::Architecture(format!(
                    "SE module in downsampling block {prefix}"
                )));
            }
            p.name = self.se_module(&format!("{prefix}.se_module"), &p)?;
            self.se_blocks += 1;
        }
        if residual {
            if p.channels != x.channels || p.size != x.size {
                return Err(MiniFasNetError::Architecture(format!(
                    "{prefix}: shortcut of {} channels onto {}",
                    x.channels, p.channels
                )));
            }
            p.name = self.g.node("Add", &[&x.name, &p.name], &[]);
        }
        Ok(p)
    }

    /// Squeeze-and-excitation: x * sigmoid(bn2(fc2(relu(bn1(fc1(avgpool x)))))).
    fn se_module(&mut self, prefix: &str, x: &Feature) -> Result<String> {
        let pooled = self.g.node("GlobalAveragePool", &[&x.name], &[]);
        let mut h = pooled;
        let mut channels = x.channels;
        for (fc, bn, act) in [("fc1", "bn1", "Relu"), ("fc2", "bn2", "Sigmoid")] {
            let wname = format!("{prefix}.{fc}.weight");
            let w = self.take(&wname)?;
            let &[out, inp, 1, 1] = w.shape.as_slice() else {
                return Err(shape_err(&wname, w, "[out, in, 1, 1]".into()));
            };
            if inp != channels {
                return Err(shape_err(&wname, w, format!("[_, {channels}, 1, 1]")));
            }
            let bn = self.bn(&format!("{prefix}.{bn}"), out)?;
            let (weight, bias) = fold_rows(&w.data, out, &bn);
            let y = self.g.conv(
                &h,
                &weight,
                [out as i64, inp as i64, 1, 1],
                Some(&bias),
                1,
                [0; 4],
                1,
            );
            h = self.g.node(act, &[&y], &[]);
            channels = out;
        }
        if channels != x.channels {
            return Err(MiniFasNetError::Architecture(format!(
                "{prefix}: SE output width differs"
            )));
        }
        Ok(self.g.node("Mul", &[&x.name, &h], &[]))
    }

    /// `linear` (no bias) followed by BatchNorm1d `bn`, folded into one Gemm.
    fn linear_bn(&mut self, x: &str, inp: usize) -> Result<(String, usize)> {
        let w = self.take("linear.weight")?;
        let (out, got_in) = dims2(w, "linear.weight")?;
        if got_in != inp {
            return Err(shape_err("linear.weight", w, format!("[_, {inp}]")));
        }
        let bn = self.bn("bn", out)?;
        let (weight, bias) = fold_rows(&w.data, out, &bn);
        Ok((
            self.g
                .dense(x, &weight, out as i64, inp as i64, Some(&bias)),
            out,
        ))
    }
}

/// Scales each of the `rows` equal-length rows of `w` by the BN scale and
/// returns it with the BN shift as the bias.
fn fold_rows(w: &[f32], rows: usize, bn: &Bn) -> (Vec<f32>, Vec<f32>) {
    let per_row = w.len() / rows.max(1);
    let weight = w
        .chunks_exact(per_row.max(1))
        .zip(&bn.scale)
        .flat_map(|(row, &s)| row.iter().map(move |&v| (f64::from(v) * s) as f32))
        .collect();
    let bias = bn.shift.iter().map(|&v| v as f32).collect();
    (weight, bias)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_from_file_name() {
        assert_eq!(
            crop_scale_from_file_name("2.7_80x80_MiniFASNetV2.pth"),
            Some(2.7)
        );
        assert_eq!(
            crop_scale_from_file_name("4_0_0_80x80_MiniFASNetV1SE.pth"),
            Some(4.0)
        );
        assert_eq!(crop_scale_from_file_name("MiniFASNet.pth"), None);
    }

    #[test]
    fn empty_state_dict_is_a_typed_error() {
        let err = convert_state_dict(&BTreeMap::new(), "x").unwrap_err();
        assert!(matches!(err, MiniFasNetError::Missing(k) if k == "conv1.conv.weight"));
    }
}
