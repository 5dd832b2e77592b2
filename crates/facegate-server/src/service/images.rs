//! Image input and admission: turning what a client sent into pixels
//! without letting many requests exhaust memory or CPU.
//!
//! A request's image is downloaded (URLs) on the async side, inspected
//! (header only) to learn how much memory decoding needs, admitted against
//! the process-wide decode budget, then decoded and analysed under one of a
//! fixed number of CPU slots. What waits is the encoded image (at most
//! 3 MB), never its pixels.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use facegate_image::{
    decode, decode_base64, inspect, DecodeBudget, FetchPolicy, ImageError, Limits, RgbImage,
};
use tokio::sync::Semaphore;

use crate::error::{ImageRole, ServiceError};
use crate::telemetry;

/// How long a request waits for decode memory before the overload answer.
pub const DECODE_WAIT: Duration = Duration::from_secs(3);

/// An input image as the client gave it.
#[derive(Clone)]
pub enum ImageInput {
    /// `image.bytes`: standard Base64, optionally a `data:` URL.
    Base64(String),
    /// `image.url`.
    Url(String),
    /// Raw file bytes (multipart upload).
    Bytes(Vec<u8>),
}

// Never print image data.
impl std::fmt::Debug for ImageInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageInput::Base64(s) => write!(f, "Base64({} chars)", s.len()),
            ImageInput::Url(_) => f.write_str("Url(..)"),
            ImageInput::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
        }
    }
}

impl ImageInput {
    /// From the wire's `{url, bytes}` object: exactly one must be given.
    pub fn from_fields(
        url: Option<String>,
        bytes: Option<String>,
        field: &str,
    ) -> Result<Self, ServiceError> {
        match (url, bytes) {
            (Some(u), None) => Ok(ImageInput::Url(u)),
            (None, Some(b)) => Ok(ImageInput::Base64(b)),
            (Some(_), Some(_)) => Err(ServiceError::invalid(format!(
                "{field}: give either url or bytes, not both"
            ))),
            (None, None) => Err(ServiceError::invalid(format!(
                "{field}: url or bytes is required"
            ))),
        }
    }

    /// Base64 or raw bytes to encoded image bytes, within `limits`.
    fn into_encoded(self, limits: &Limits) -> Result<Vec<u8>, ImageError> {
        match self {
            ImageInput::Base64(s) => decode_base64(&s, limits.max_bytes),
            ImageInput::Bytes(b) if b.len() > limits.max_bytes => Err(ImageError::TooLarge {
                max_bytes: limits.max_bytes,
            }),
            ImageInput::Bytes(b) => Ok(b),
            // Downloaded before; never reaches here.
            ImageInput::Url(_) => Err(ImageError::InvalidFormat),
        }
    }
}

/// Counts one decoded image for as long as it is alive.
struct DecodedImage(Arc<AtomicUsize>);

impl DecodedImage {
    fn count(live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        DecodedImage(live.clone())
    }
}

impl Drop for DecodedImage {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// CPU slots, the decode memory budget and the download policy: what
/// every image of every request passes through.
pub(crate) struct ImageAdmission {
    fetch: FetchPolicy,
    cpu: Arc<Semaphore>,
    decode_budget: DecodeBudget,
    decoded: Arc<AtomicUsize>,
}

impl ImageAdmission {
    pub(crate) fn new(fetch: FetchPolicy, cpu_slots: usize, decode_budget: u64) -> Self {
        ImageAdmission {
            fetch,
            cpu: Arc::new(Semaphore::new(cpu_slots.max(1))),
            decode_budget: DecodeBudget::new(decode_budget),
            decoded: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Decoded images in memory right now.
    pub(crate) fn decoded_images(&self) -> usize {
        self.decoded.load(Ordering::SeqCst)
    }

    /// Decode memory reserved right now, and the whole budget, in bytes.
    pub(crate) fn decode_memory(&self) -> (u64, u64) {
        (self.decode_budget.in_use(), self.decode_budget.total())
    }

    /// Runs CPU-heavy work on the blocking pool, at most `cpu_slots` at once.
    async fn cpu<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ServiceError> {
        let permit = self
            .cpu
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ServiceError::Internal("cpu semaphore closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("worker failed: {e}")))
    }

    /// Downloads an `image.url` on the async side (no CPU slot is held while
    /// the network is slow); other inputs pass through.
    async fn fetch(&self, input: ImageInput, role: ImageRole) -> Result<ImageInput, ServiceError> {
        match input {
            ImageInput::Url(url) => {
                let started = Instant::now();
                let fetched = facegate_image::fetch(&url, &self.fetch).await;
                metrics::histogram!(telemetry::FETCH_DURATION)
                    .record(telemetry::seconds_since(started));
                fetched
                    .map(ImageInput::Bytes)
                    .map_err(|source| ServiceError::Image { role, source })
            }
            other => Ok(other),
        }
    }

    /// Loads an image and runs `work` on its pixels, holding one CPU slot
    /// from the start of decoding to the end of `work`, so at most
    /// `cpu_slots` decoded images are in memory however many requests wait.
    ///
    /// Before any pixel is allocated the header says how much memory the
    /// decode needs, and that much of the decode budget is reserved until
    /// `work` ends: an image larger than the whole budget is too large, and
    /// when the budget is in use the request waits up to [`DECODE_WAIT`],
    /// then gets the overload answer. Image errors name `role`.
    pub(crate) async fn with_image<T: Send + 'static>(
        &self,
        input: ImageInput,
        role: ImageRole,
        limits: Limits,
        work: impl FnOnce(&RgbImage) -> Result<T, ServiceError> + Send + 'static,
    ) -> Result<T, ServiceError> {
        let image_error = move |source| match source {
            ImageError::Busy { .. } => ServiceError::Overloaded,
            source => ServiceError::Image { role, source },
        };
        let input = self.fetch(input, role).await?;
        let (bytes, info) = tokio::task::spawn_blocking(move || {
            let bytes = input.into_encoded(&limits)?;
            let info = inspect(&bytes, &limits)?;
            Ok((bytes, info))
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("worker failed: {e}")))?
        .map_err(image_error)?;
        let waiting = telemetry::Waiting::start();
        let started = Instant::now();
        let permit = self
            .decode_budget
            .reserve(info.decode_bytes, DECODE_WAIT)
            .await;
        drop(waiting);
        metrics::histogram!(telemetry::DECODE_WAIT).record(telemetry::seconds_since(started));
        let outcome = match &permit {
            Ok(_) => "admitted",
            Err(ImageError::Busy { .. }) => "busy",
            Err(_) => "over_budget",
        };
        metrics::counter!(telemetry::DECODE_ADMISSIONS, "outcome" => outcome).increment(1);
        let permit = permit.map_err(image_error)?;
        let live = self.decoded.clone();
        self.cpu(move || {
            // Declared first so they are dropped after the image.
            let _permit = permit;
            let _counted = DecodedImage::count(&live);
            let started = Instant::now();
            let image = decode(&bytes, &limits).map_err(image_error);
            metrics::histogram!(telemetry::DECODE_DURATION)
                .record(telemetry::seconds_since(started));
            work(&image?)
        })
        .await?
    }
}
