//! The SFace conversion (int8 block-quantised opset 21 → fp32 opset 13)
//! against ONNX Runtime's outputs on the original file
//! (tools/sface-reference/sface_reference.py), on both runtimes.

use std::path::PathBuf;
use std::sync::OnceLock;

use facegate_models::sface::{self, Converted};
use facegate_onnx::Message;
use facegate_vision::runtime::{Runtime, RuntimeConfig, RuntimeKind, ORT_LIBRARY_NAME};

const SOURCE: &str = "face_recognition_sface_2021dec_int8bq.onnx";
const SIZE: usize = sface::INPUT_SIZE;

fn model_dir() -> PathBuf {
    std::env::var_os("FACEGATE_MODEL_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-models"),
        PathBuf::from,
    )
}

fn converted() -> &'static Converted {
    static CONVERTED: OnceLock<Converted> = OnceLock::new();
    CONVERTED.get_or_init(|| {
        let path = model_dir().join("sources").join(SOURCE);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run scripts/test.sh (it provisions the models)",
                path.display()
            )
        });
        sface::convert(&bytes).expect("SFace converts")
    })
}

fn reference() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sface_reference.json");
    serde_json::from_slice(&std::fs::read(path).expect("reference JSON")).expect("valid JSON")
}

/// The reference inputs, rebuilt with the script's integer formulas (NCHW).
fn input(name: &str) -> Vec<f32> {
    let mut v = Vec::with_capacity(3 * SIZE * SIZE);
    for c in 0..3usize {
        for y in 0..SIZE {
            for x in 0..SIZE {
                let value = match name {
                    "gradient" => [
                        (x * 255) / (SIZE - 1),
                        (y * 255) / (SIZE - 1),
                        ((x + y) * 255) / (2 * (SIZE - 1)),
                    ][c],
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

fn runtimes() -> Vec<Runtime> {
    let lib = model_dir().join("onnxruntime").join(ORT_LIBRARY_NAME);
    assert!(
        lib.is_file(),
        "{} missing: run scripts/test.sh",
        lib.display()
    );
    let ort = Runtime::new(&RuntimeConfig {
        kind: RuntimeKind::OnnxRuntime,
        ort_library: Some(lib),
        sessions_per_model: 1,
        lone_run_threads: 1,
    })
    .expect("ONNX Runtime loads");
    vec![ort, Runtime::tract()]
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn conversion_removes_quantisation_and_stale_inputs() {
    let c = converted();
    assert_eq!(c.source_opset, 21);
    assert_eq!(c.dequantized, 29);
    assert_eq!(c.stale_inputs.len(), 29, "{:?}", c.stale_inputs);
    assert!(c
        .stale_inputs
        .iter()
        .all(|n| n.ends_with("_weight") || n == "pre_fc1_bias"));
    let m = &c.model;
    assert_eq!(m.opset_import.len(), 1);
    assert_eq!(m.opset_import[0].version, facegate_onnx::OPSET);
    let g = m.graph.as_ref().unwrap();
    assert_eq!(g.input.len(), 1);
    assert_eq!(g.input[0].name, sface::INPUT_NAME);
    assert_eq!(g.output.len(), 1);
    assert_eq!(g.output[0].name, sface::OUTPUT_NAME);
    let ops: std::collections::BTreeSet<&str> = g.node.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(
        ops.into_iter().collect::<Vec<_>>(),
        [
            "BatchNormalization",
            "Conv",
            "Flatten",
            "Gemm",
            "Mul",
            "PRelu",
            "Sub"
        ]
    );
    // Every initializer is float32 now, and nothing is left unread.
    assert!(g.initializer.iter().all(|t| t.data_type == 1));
    let read: std::collections::HashSet<&str> = g
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .collect();
    assert!(g.initializer.iter().all(|t| read.contains(t.name.as_str())));
    // 27 convolutions + the dense layer: 10.3 M weights as fp32.
    let weights: usize = g.initializer.iter().map(|t| t.raw_data.len() / 4).sum();
    assert!(weights > 6_000_000, "{weights}");
}

#[test]
fn installed_model_is_the_conversion_of_the_pinned_source() {
    let installed = std::fs::read(model_dir().join(facegate_vision::files::SFACE_EMBEDDER))
        .expect("installed SFace model");
    assert_eq!(installed, converted().model.encode_to_vec());
}

#[test]
fn converted_model_matches_onnx_runtime_on_the_original_on_both_runtimes() {
    let reference = reference();
    assert_eq!(reference["source_sha256"].as_str().unwrap().len(), 64);
    let bytes = converted().model.encode_to_vec();
    let mut per_runtime = Vec::new();
    for runtime in runtimes() {
        let model = runtime
            .load("sface", &bytes, [1, 3, SIZE, SIZE])
            .expect("converted SFace loads");
        assert_eq!(model.output_names(), [sface::OUTPUT_NAME]);
        let mut outputs = Vec::new();
        for name in ["gradient", "checkerboard", "constant128"] {
            let expected: Vec<f32> = reference["outputs"][name]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(expected.len(), sface::EMBEDDING_DIM);
            let out = model.run(&input(name)).unwrap().remove(0);
            assert_eq!(out.shape, [1, sface::EMBEDDING_DIM]);
            let scale = expected.iter().map(|v| v.abs()).fold(0.0, f32::max);
            let diff = max_abs_diff(&out.data, &expected);
            println!(
                "{}: {name}: max |diff| {diff:.2e} (values up to {scale:.2})",
                runtime.backend().name()
            );
            assert!(diff < 1e-4 * scale.max(1.0), "{name}: {diff}");
            outputs.push(out.data);
        }
        per_runtime.push(outputs);
    }
    for (a, b) in per_runtime[0].iter().zip(&per_runtime[1]) {
        let diff = max_abs_diff(a, b);
        println!("onnxruntime vs tract: max |diff| {diff:.2e}");
        assert!(diff < 1e-4, "{diff}");
    }
}
