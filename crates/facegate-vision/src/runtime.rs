//! Two interchangeable ONNX runtimes behind one [`Model`] type.
//!
//! * ONNX Runtime (through `ort`, loaded dynamically from the shared library
//!   `facegate models install` provisions) — the fast path, CPU or CUDA.
//! * tract (pure Rust) — always available, the fallback.
//!
//! Each ONNX Runtime session gets one intra-op thread and a model keeps a
//! small pool of sessions, so under load parallelism comes from serving
//! several requests at once rather than from splitting one convolution over
//! threads (measured faster on the 2-core target machine). A run that
//! starts while no other run of the same runtime is in progress uses one
//! more session with [`RuntimeConfig::lone_run_threads`] threads instead: a
//! lone request would otherwise leave the other cores idle (SFace 28.5 →
//! 20.1 ms on 2 cores). Models whose graph has a symbolic batch dimension
//! (the per-face networks) batch concurrent runs when runs queue
//! ([`crate::batch`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tract_onnx::prelude::{
    tvec, DatumExt, Framework, InferenceModelExt, IntoRunnable, Tensor as TractTensor,
    TypedRunnableModel,
};

use crate::batch::{BatchStats, Batcher, Batching, Lanes, Outcome};
use crate::error::{Result, VisionError};

pub use facegate_core::RuntimeKind;

/// The runtime actually in use after `auto` has been resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    OnnxRuntime,
    Cuda,
    Tract,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::OnnxRuntime => "onnxruntime",
            Backend::Cuda => "cuda",
            Backend::Tract => "tract",
        }
    }
}

/// The file name of the ONNX Runtime library facegate provisions.
pub const ORT_LIBRARY_NAME: &str = "libonnxruntime.so.1.31.1";

/// How to build a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub kind: RuntimeKind,
    /// Path of `libonnxruntime.so.*`; `None` means ONNX Runtime is not installed.
    pub ort_library: Option<PathBuf>,
    /// Sessions per model for ONNX Runtime (concurrent inferences per model).
    pub sessions_per_model: usize,
    /// Intra-op threads of the extra session a run uses when no other run
    /// of this runtime is in progress (ONNX Runtime on CPU only); 1 means
    /// every run stays on one thread.
    pub lone_run_threads: usize,
}

impl RuntimeConfig {
    /// The default configuration for a model directory: ONNX Runtime is used
    /// when `DIR/onnxruntime/libonnxruntime.so.1.31.1` exists; `cuda` uses
    /// the GPU build under `DIR/onnxruntime-gpu/` (`models install --gpu`).
    pub fn for_model_dir(kind: RuntimeKind, model_dir: &Path) -> Self {
        let folder = match kind {
            RuntimeKind::Cuda => crate::files::ONNXRUNTIME_GPU_DIR,
            _ => crate::files::ONNXRUNTIME_DIR,
        };
        let lib = model_dir.join(folder).join(ORT_LIBRARY_NAME);
        Self {
            kind,
            ort_library: lib.is_file().then_some(lib),
            // On a CPU one single-threaded session per core keeps every
            // core busy. On a GPU batch-1 runs cannot fill the device: two
            // sessions let one copy while the other computes, and the
            // requests beyond them queue into batches (crate::batch).
            sessions_per_model: match kind {
                RuntimeKind::Cuda => 2,
                _ => available_cores(),
            },
            lone_run_threads: available_cores(),
        }
    }
}

/// Cores this process may use.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// A loaded runtime; creates [`Model`]s.
#[derive(Clone)]
pub struct Runtime {
    backend: Backend,
    ort_env: Option<ort::environment::Environment>,
    sessions_per_model: usize,
    lone_run_threads: usize,
    /// Runs in progress on any model of this runtime.
    running: Arc<AtomicUsize>,
    batching: Batching,
    lanes: Lanes,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("backend", &self.backend)
            .finish()
    }
}

/// ONNX Runtime can be loaded once per process; remember the outcome.
static ORT_LOADED: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();

fn ort_environment(
    lib: &Path,
    cuda: bool,
) -> std::result::Result<ort::environment::Environment, String> {
    if cuda {
        preload_cuda(lib.parent().unwrap_or(Path::new(".")))?;
    }
    let loaded = ORT_LOADED.get_or_init(|| {
        ort::init_from(lib)
            .map(|_| lib.to_path_buf())
            .map_err(|e| format!("cannot load {}: {e}", lib.display()))
    });
    match loaded {
        Ok(first) if first != lib => {
            return Err(format!(
                "ONNX Runtime already loaded from {} in this process",
                first.display()
            ))
        }
        Ok(_) => {}
        Err(e) => return Err(e.clone()),
    }
    // The CUDA provider is chosen per session (Runtime::load), so one
    // process can hold CPU and GPU sessions side by side.
    ort::init()
        .with_name("facegate")
        .build()
        .map_err(|e| e.to_string())
}

/// The CUDA libraries `models install --gpu` lays out beside ONNX Runtime,
/// loaded once per process.
static CUDA_PRELOADED: OnceLock<std::result::Result<usize, String>> = OnceLock::new();

/// Loads the NVIDIA driver and then every CUDA library in `dir` with
/// global symbol visibility, so that when ONNX Runtime opens its CUDA
/// provider the provider's dependencies (cudart, cuBLAS, cuDNN, ...) are
/// already resolved by soname, without system CUDA or `LD_LIBRARY_PATH`.
fn preload_cuda(dir: &Path) -> std::result::Result<usize, String> {
    CUDA_PRELOADED
        .get_or_init(|| {
            use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
            // SAFETY: loading a shared library runs its initialisers; these
            // are the NVIDIA driver and the hash-pinned libraries that
            // `models install --gpu` verified.
            let open = |path: &Path| unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) };
            open(Path::new("libcuda.so.1"))
                .map(std::mem::forget)
                .map_err(|e| {
                    format!(
                        "runtime = \"cuda\" needs an NVIDIA GPU and its driver (CUDA 13: driver \
                     580 or newer), but libcuda.so.1 cannot be loaded: {e}"
                    )
                })?;
            let mut pending: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| {
                    format!(
                        "{}: {e}; run `facegate models install --gpu`",
                        dir.display()
                    )
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.contains(".so") && !n.starts_with("libonnxruntime"))
                })
                .collect();
            pending.sort();
            // Libraries depend on each other; load what can be loaded until
            // nothing more can (each round loads at least one or stops).
            let mut loaded = 0;
            loop {
                let before = pending.len();
                let mut last_error = String::new();
                pending.retain(|path| match open(path) {
                    Ok(lib) => {
                        std::mem::forget(lib);
                        false
                    }
                    Err(e) => {
                        last_error = e.to_string();
                        true
                    }
                });
                loaded += before - pending.len();
                if pending.is_empty() {
                    return Ok(loaded);
                }
                if pending.len() == before {
                    return Err(format!(
                        "cannot load the CUDA libraries in {}: {last_error}",
                        dir.display()
                    ));
                }
            }
        })
        .clone()
}

impl Runtime {
    pub fn new(config: &RuntimeConfig) -> Result<Self> {
        let want_ort = match config.kind {
            RuntimeKind::Tract => None,
            RuntimeKind::Auto => config.ort_library.as_deref().map(|l| (l, false)),
            RuntimeKind::OnnxRuntime | RuntimeKind::Cuda => {
                let lib = config.ort_library.as_deref().ok_or_else(|| {
                    let install = match config.kind {
                        RuntimeKind::Cuda => "facegate models install --gpu",
                        _ => "facegate models install",
                    };
                    VisionError::RuntimeUnavailable(format!(
                        "{ORT_LIBRARY_NAME} is not installed (run `{install}`)"
                    ))
                })?;
                Some((lib, config.kind == RuntimeKind::Cuda))
            }
        };
        let sessions_per_model = config.sessions_per_model.max(1);
        match want_ort {
            None => Ok(Self::tract()),
            Some((lib, cuda)) => match ort_environment(lib, cuda) {
                Ok(env) => Ok(Self {
                    backend: if cuda {
                        Backend::Cuda
                    } else {
                        Backend::OnnxRuntime
                    },
                    ort_env: Some(env),
                    sessions_per_model,
                    // A GPU run does not split over CPU threads, and
                    // more threads than cores only queue.
                    lone_run_threads: if cuda {
                        1
                    } else {
                        config.lone_run_threads.clamp(1, available_cores())
                    },
                    running: Arc::default(),
                    batching: if cuda {
                        Batching::GPU
                    } else {
                        Batching::DEFAULT
                    },
                    lanes: Lanes::default(),
                }),
                // `auto` degrades to tract; an explicit choice is an error.
                Err(e) if config.kind == RuntimeKind::Auto => {
                    tracing::warn!(error = %e, "ONNX Runtime unavailable, using tract");
                    Ok(Self::tract())
                }
                Err(e) => Err(VisionError::RuntimeUnavailable(e)),
            },
        }
    }

    /// The pure-Rust runtime; cannot fail.
    pub fn tract() -> Self {
        Self {
            backend: Backend::Tract,
            ort_env: None,
            sessions_per_model: 1,
            lone_run_threads: 1,
            running: Arc::default(),
            // tract runs one input at a time.
            batching: Batching::OFF,
            lanes: Lanes::default(),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The same runtime (same environment) whose models load with another
    /// [`RuntimeConfig::lone_run_threads`] and count their runs apart.
    pub fn with_lone_run_threads(&self, threads: usize) -> Self {
        Self {
            lone_run_threads: if self.backend == Backend::OnnxRuntime {
                threads.clamp(1, available_cores())
            } else {
                1
            },
            running: Arc::default(),
            ..self.clone()
        }
    }

    /// The same runtime whose models load with another [`Batching`]
    /// (ONNX Runtime only: tract runs one input at a time).
    pub fn with_batching(&self, batching: Batching) -> Self {
        Self {
            batching: if self.backend == Backend::Tract {
                Batching::OFF
            } else {
                batching
            },
            ..self.clone()
        }
    }

    /// The batching its models load with.
    pub fn batching(&self) -> Batching {
        self.batching
    }

    /// Runs `f` as one analysis in flight whose model runs are batched in
    /// `lane` (the server passes one lane per tenant); see [`crate::batch`].
    pub fn serve<T>(&self, lane: u64, f: impl FnOnce() -> T) -> T {
        self.lanes.serve(lane, f)
    }

    /// Loads an ONNX model whose single input has the NCHW shape
    /// `input_shape` (batch 1); a model whose graph declares a symbolic
    /// batch dimension batches concurrent runs.
    pub fn load(&self, name: &str, onnx: &[u8], input_shape: [usize; 4]) -> Result<Model> {
        let load_err = |reason: String| VisionError::ModelLoad {
            model: name.to_string(),
            reason,
        };
        let mut batcher = None;
        let (inner, output_names) = match &self.ort_env {
            None => {
                let plan = tract_onnx::onnx()
                    .model_for_read(&mut &onnx[..])
                    .and_then(|m| m.with_input_fact(0, <f32 as DatumExt>::fact(input_shape).into()))
                    .and_then(|m| m.into_optimized())
                    .and_then(|m| m.into_runnable())
                    .map_err(|e| load_err(format!("{e:#}")))?;
                let graph = plan.model();
                let names = graph
                    .output_outlets()
                    .map_err(|e| load_err(format!("{e:#}")))?
                    .iter()
                    .map(|&o| {
                        graph
                            .outlet_label(o)
                            .map_or_else(|| graph.node(o.node).name.clone(), str::to_string)
                    })
                    .collect();
                (Inner::Tract(plan), names)
            }
            Some(env) => {
                let cuda = self.backend == Backend::Cuda;
                let session = |threads: usize| {
                    ort::session::Session::builder(env)
                        .and_then(|b| {
                            if cuda {
                                b.with_execution_providers([ort::ep::CUDA::default()
                                    .build()
                                    .error_on_failure()])
                                    .map_err(Into::into)
                            } else {
                                Ok(b)
                            }
                        })
                        .and_then(|b| b.with_intra_threads(threads).map_err(Into::into))
                        .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
                        // Spinning workers would take cycles from the
                        // request that ends the run's solitude.
                        .and_then(|b| b.with_intra_op_spinning(false).map_err(Into::into))
                        .and_then(|mut b| b.commit_from_memory(onnx))
                        .map(Mutex::new)
                        .map_err(|e| load_err(e.to_string()))
                };
                let sessions = (0..self.sessions_per_model)
                    .map(|_| session(1))
                    .collect::<Result<Vec<_>>>()?;
                let lone = match self.lone_run_threads {
                    0 | 1 => None,
                    threads => Some(session(threads)?),
                };
                let (names, symbolic_batch) = {
                    let first = sessions[0]
                        .lock()
                        .map_err(|_| load_err("session lock poisoned".into()))?;
                    let names = first
                        .outputs()
                        .iter()
                        .map(|o| o.name().to_string())
                        .collect();
                    let symbolic_batch = first
                        .inputs()
                        .first()
                        .and_then(|i| i.dtype().tensor_shape())
                        .and_then(|shape| shape.first().copied())
                        .is_some_and(|d| d < 0);
                    (names, symbolic_batch)
                };
                if symbolic_batch && self.batching.is_on() {
                    batcher = Some(Arc::new(Batcher::new(
                        self.batching,
                        sessions.len(),
                        self.lanes.clone(),
                    )));
                }
                let inner = Inner::Ort {
                    sessions,
                    next: AtomicUsize::new(0),
                    lone,
                    lone_runs: AtomicU64::new(0),
                    running: self.running.clone(),
                };
                (inner, names)
            }
        };
        Ok(Model {
            name: name.to_string(),
            input_shape,
            output_names,
            inner: Arc::new(inner),
            batcher,
        })
    }
}

enum Inner {
    Tract(Arc<TypedRunnableModel>),
    Ort {
        sessions: Vec<Mutex<ort::session::Session>>,
        next: AtomicUsize,
        /// The multi-threaded session for runs that start alone.
        lone: Option<Mutex<ort::session::Session>>,
        /// Runs that used `lone`.
        lone_runs: AtomicU64,
        running: Arc<AtomicUsize>,
    },
}

/// Counts a run in progress for as long as it lives.
struct Running<'a>(&'a AtomicUsize);

impl<'a> Running<'a> {
    /// Enters a run; true when no other run was in progress.
    fn enter(counter: &'a AtomicUsize) -> (Self, bool) {
        let others = counter.fetch_add(1, Ordering::SeqCst);
        (Self(counter), others == 0)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One output tensor, copied out of the runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A loaded model, cheap to clone and safe to share between threads.
#[derive(Clone)]
pub struct Model {
    name: String,
    input_shape: [usize; 4],
    output_names: Vec<String>,
    inner: Arc<Inner>,
    /// Present when the model batches concurrent runs.
    batcher: Option<Arc<Batcher>>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.name)
            .field("input_shape", &self.input_shape)
            .finish()
    }
}

impl Model {
    pub fn input_shape(&self) -> [usize; 4] {
        self.input_shape
    }

    /// How many runs used the multi-threaded session for lone runs.
    pub fn lone_runs(&self) -> u64 {
        match &*self.inner {
            Inner::Ort { lone_runs, .. } => lone_runs.load(Ordering::Relaxed),
            Inner::Tract(_) => 0,
        }
    }

    /// Output names in the order [`Model::run`] returns them.
    pub fn output_names(&self) -> &[String] {
        &self.output_names
    }

    /// Position of the output called `name`.
    pub fn output_index(&self, name: &str) -> Result<usize> {
        self.output_names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| VisionError::InvalidModel(format!("{}: no output {name:?}", self.name)))
    }

    /// Whether concurrent runs of this model are batched.
    pub fn batches(&self) -> bool {
        self.batcher.is_some()
    }

    /// What the model's batcher has done (zeros when it does not batch).
    pub fn batch_stats(&self) -> BatchStats {
        self.batcher
            .as_ref()
            .map_or_else(BatchStats::default, |b| b.stats())
    }

    fn fail(&self, reason: String) -> VisionError {
        VisionError::Inference {
            model: self.name.clone(),
            reason,
        }
    }

    /// Runs the model on one NCHW float32 input and returns every output in
    /// the model's declared order. Concurrent calls may share a batch.
    pub fn run(&self, input: &[f32]) -> Result<Vec<Tensor>> {
        // Our own preprocessing sizes the tensor, so a mismatch is a bug
        // here, never the client's input.
        let expected: usize = self.input_shape.iter().product();
        if input.len() != expected {
            return Err(self.fail(format!(
                "input has {} values, expected {expected}",
                input.len()
            )));
        }
        match &self.batcher {
            Some(batcher) => batcher.run(input, &|inputs, n| self.execute(inputs, n)),
            None => self.execute(input, 1),
        }
        .map_err(|reason| self.fail(reason))
    }

    /// Runs `inputs` as one batch when the model takes batches, else one by
    /// one; returns each input's outputs. For benchmarks: serving code
    /// calls [`Model::run`] and lets the batcher form batches.
    pub fn run_batch(&self, inputs: &[&[f32]]) -> Result<Vec<Vec<Tensor>>> {
        if self.batcher.is_none() || inputs.len() < 2 {
            return inputs.iter().map(|input| self.run(input)).collect();
        }
        let expected: usize = self.input_shape.iter().product();
        if let Some(bad) = inputs.iter().find(|i| i.len() != expected) {
            return Err(self.fail(format!(
                "input has {} values, expected {expected}",
                bad.len()
            )));
        }
        let joined = inputs.concat();
        crate::batch::split(self.execute(&joined, inputs.len()), inputs.len())
            .into_iter()
            .map(|outcome| outcome.map_err(|reason| self.fail(reason)))
            .collect()
    }

    /// Runs `n` inputs laid end to end as one batch of shape
    /// `[n, C, H, W]` (n > 1 only for models with a symbolic batch).
    fn execute(&self, inputs: &[f32], n: usize) -> Outcome {
        let [_, c, h, w] = self.input_shape;
        match &*self.inner {
            Inner::Tract(plan) => {
                let tensor =
                    TractTensor::from_shape(&[n, c, h, w], inputs).map_err(|e| format!("{e:#}"))?;
                let outputs = plan
                    .run(tvec!(tensor.into()))
                    .map_err(|e| format!("{e:#}"))?;
                outputs
                    .iter()
                    .map(|t| {
                        let view = t
                            .to_plain_array_view::<f32>()
                            .map_err(|e| format!("{e:#}"))?;
                        Ok(Tensor {
                            shape: view.shape().to_vec(),
                            data: view.iter().copied().collect(),
                        })
                    })
                    .collect()
            }
            Inner::Ort {
                sessions,
                next,
                lone,
                lone_runs,
                running,
            } => {
                let (_running, alone) = Running::enter(running);
                let lone = lone
                    .as_ref()
                    .filter(|_| alone)
                    .and_then(|s| s.try_lock().ok());
                let mut session = match lone {
                    Some(session) => {
                        lone_runs.fetch_add(1, Ordering::Relaxed);
                        session
                    }
                    None => acquire(sessions, next),
                };
                let value = ort::value::TensorRef::from_array_view(([n, c, h, w], inputs))
                    .map_err(|e| e.to_string())?;
                let outputs = session
                    .run(ort::inputs![value])
                    .map_err(|e| e.to_string())?;
                outputs
                    .iter()
                    .map(|(_, value)| {
                        let (shape, data) = value
                            .try_extract_tensor::<f32>()
                            .map_err(|e| e.to_string())?;
                        Ok(Tensor {
                            shape: shape.iter().map(|&d| d.max(0) as usize).collect(),
                            data: data.to_vec(),
                        })
                    })
                    .collect()
            }
        }
    }
}

/// Takes a free session if there is one, else waits for one in round-robin
/// order. A poisoned lock only means another inference panicked; the session
/// itself holds no Rust state that could be inconsistent.
fn acquire<'a>(
    sessions: &'a [Mutex<ort::session::Session>],
    next: &AtomicUsize,
) -> std::sync::MutexGuard<'a, ort::session::Session> {
    let start = next.fetch_add(1, Ordering::Relaxed);
    for i in 0..sessions.len() {
        if let Ok(guard) = sessions[(start + i) % sessions.len()].try_lock() {
            return guard;
        }
    }
    sessions[start % sessions.len()]
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
