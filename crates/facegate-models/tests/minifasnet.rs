//! End-to-end checks of the legacy PyTorch reader and the MiniFASNet → ONNX
//! converter against an independent numpy reference
//! (tools/reference/minifasnet_reference.py).

use std::path::PathBuf;
use std::time::Instant;

use facegate_models::minifasnet::{self, MiniFasNetError};
use facegate_models::torch_legacy::{read_state_dict, TorchError};
use facegate_onnx::Message;
use tract_onnx::prelude::*;

const V2: &str = "2.7_80x80_MiniFASNetV2.pth";
const V1SE: &str = "4_0_0_80x80_MiniFASNetV1SE.pth";
const TOLERANCE: f32 = 1e-4;

fn model_dir() -> PathBuf {
    match std::env::var_os("FACEGATE_MODEL_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-models"),
    }
}

fn source(file: &str) -> Vec<u8> {
    let path = model_dir().join("sources").join(file);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "MiniFASNet source {} is missing ({e}); set FACEGATE_MODEL_DIR to a directory \
             whose sources/ holds {V2} and {V1SE}",
            path.display()
        )
    })
}

fn reference() -> serde_json::Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/minifasnet_reference.json");
    serde_json::from_slice(&std::fs::read(path).expect("reference JSON")).expect("valid JSON")
}

/// The reference inputs, rebuilt with the script's integer formulas
/// (NCHW, channel 0 = B).
fn input(name: &str) -> Vec<f32> {
    let mut v = Vec::with_capacity(3 * 80 * 80);
    for c in 0..3usize {
        for y in 0..80usize {
            for x in 0..80usize {
                let value = match name {
                    "gradient" => [(x * 255) / 79, (y * 255) / 79, ((x + y) * 255) / 158][c],
                    "checkerboard" => {
                        let base = if ((x / 8) + (y / 8)) % 2 == 0 {
                            200
                        } else {
                            30
                        };
                        base + 10 * c
                    }
                    "constant128" => 128,
                    _ => unreachable!("unknown input {name}"),
                };
                v.push(value as f32);
            }
        }
    }
    v
}

#[test]
fn parses_both_state_dicts() {
    // README: 334 / 370 tensors, of which 50 / 56 are num_batches_tracked.
    for (file, tensors, params) in [(V2, 334 - 50, 444_928), (V1SE, 370 - 56, 444_554)] {
        let sd = read_state_dict(&source(file)).unwrap();
        assert_eq!(sd.len(), tensors, "{file}");
        let total: usize = sd.values().map(|t| t.numel()).sum();
        assert_eq!(total, params, "{file}");
        assert!(sd.keys().all(|k| !k.starts_with("module.")));
        assert!(sd.keys().all(|k| !k.ends_with("num_batches_tracked")));
        assert_eq!(sd["conv1.conv.weight"].shape, [32, 3, 3, 3]);
        assert_eq!(sd["prob.weight"].shape, [3, 128]);
    }
}

#[test]
fn converted_models_match_the_numpy_reference() {
    let reference = reference();
    for (variant, file, se_blocks) in [("MiniFASNetV2", V2, "0"), ("MiniFASNetV1SE", V1SE, "3")] {
        let bytes = source(file);
        let t0 = Instant::now();
        let model = minifasnet::convert(&bytes, variant).unwrap();
        let onnx = model.encode_to_vec();
        let convert_ms = t0.elapsed().as_secs_f64() * 1e3;
        let se = model
            .metadata_props
            .iter()
            .find(|p| p.key == "se_blocks")
            .unwrap();
        assert_eq!(se.value, se_blocks, "{variant}");

        let graph = model.graph.as_ref().unwrap();
        assert_eq!(graph.input.len(), 1);
        assert_eq!(graph.input[0].name, "input");
        assert_eq!(graph.output.len(), 1);
        assert_eq!(graph.output[0].name, "probs");

        let t1 = Instant::now();
        let runnable = tract_onnx::onnx()
            .model_for_read(&mut &onnx[..])
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let load_ms = t1.elapsed().as_secs_f64() * 1e3;

        let mut worst = 0f32;
        let mut run_ms = f64::INFINITY;
        for name in ["gradient", "checkerboard", "constant128"] {
            let x = Tensor::from_shape(&[1, 3, 80, 80], &input(name)).unwrap();
            let t2 = Instant::now();
            let out = runnable.run(tvec!(x.into())).unwrap();
            run_ms = run_ms.min(t2.elapsed().as_secs_f64() * 1e3);
            let probs = out[0].to_plain_array_view::<f32>().unwrap();
            assert_eq!(probs.shape(), [1, 3]);
            let expected = &reference["models"][variant]["outputs"][name]["probs"];
            for (c, got) in probs.iter().enumerate() {
                let want = expected[c].as_f64().unwrap() as f32;
                let diff = (got - want).abs();
                worst = worst.max(diff);
                assert!(
                    diff <= TOLERANCE,
                    "{variant} {name} class {c}: {got} vs {want}"
                );
            }
        }
        println!(
            "{variant}: {} bytes of ONNX, convert {convert_ms:.1} ms, tract load {load_ms:.0} ms, \
             best run {run_ms:.1} ms, max |probs - reference| = {worst:.2e}",
            onnx.len()
        );
    }
}

#[test]
fn truncated_files_are_typed_errors() {
    let bytes = source(V2);
    // Everywhere: header, state-dict pickle, key list, raw storages.
    let cuts = [59_500, 66_000, 70_000, bytes.len() - 1];
    for cut in (0..bytes.len()).step_by(1009).chain(cuts) {
        let err = minifasnet::convert(&bytes[..cut], "MiniFASNetV2").unwrap_err();
        assert!(matches!(err, MiniFasNetError::Torch(_)), "cut {cut}: {err}");
    }
}

#[test]
fn a_flipped_header_byte_is_a_typed_error() {
    let bytes = source(V2);
    // Byte 5 lies in the magic number; byte 19 in the protocol version.
    let mut bad = bytes.clone();
    bad[5] ^= 0x01;
    assert!(matches!(read_state_dict(&bad), Err(TorchError::BadMagic)));
    let mut bad = bytes.clone();
    bad[18] ^= 0x01;
    assert!(matches!(
        read_state_dict(&bad),
        Err(TorchError::BadProtocolVersion(_))
    ));
    // Every single-byte flip in the pickled part must be an error or a clean
    // parse, never a panic.
    for at in (0..66_669).step_by(97) {
        let mut bad = bytes.clone();
        bad[at] ^= 0x5a;
        let _ = minifasnet::convert(&bad, "MiniFASNetV2");
    }
}

#[test]
fn random_bytes_are_typed_errors() {
    // xorshift64*: deterministic, no extra dependency.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    for len in [1usize, 7, 64, 1000, 100_000] {
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        assert!(read_state_dict(&bytes).is_err());
        // The same noise behind a valid header reaches the pickle VM.
        let mut framed = source(V2)[..137].to_vec();
        framed.extend_from_slice(&bytes);
        assert!(read_state_dict(&framed).is_err());
    }
}
