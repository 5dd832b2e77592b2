//! A process-wide memory budget for decoding.
//!
//! [`Limits`](crate::Limits) bound one image; they cannot bound how many
//! images are decoded at once. A 308 KB PNG may legitimately decode to
//! 40 megapixels, so a few concurrent requests could take gigabytes. The
//! server therefore asks [`inspect`](crate::inspect) how many bytes a decode
//! will allocate ([`ImageInfo::decode_bytes`](crate::ImageInfo)), reserves
//! that much from one shared [`DecodeBudget`] and decodes while holding the
//! returned [`DecodePermit`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::ImageError;

/// Budget granularity. Counting KiB rather than bytes keeps every
/// reservation within the `u32` that `acquire_many` takes (up to 4 TiB).
const UNIT: u64 = 1024;

/// Bounds on the default budget: below 256 MiB a single large legitimate
/// photo would not fit; above 4 GiB the budget stops protecting anything a
/// face server needs.
const MIN_DEFAULT: u64 = 256 << 20;
const MAX_DEFAULT: u64 = 4 << 30;
/// Used when the available memory cannot be read (not Linux, no /proc).
const FALLBACK_DEFAULT: u64 = 1 << 30;

/// A shared pool of decoding memory, in bytes.
///
/// Cloning is cheap and every clone draws from the same pool. Waiters are
/// served first come, first served (a large image at the head of the queue
/// is not starved by a stream of small ones).
#[derive(Debug, Clone)]
pub struct DecodeBudget {
    semaphore: Arc<Semaphore>,
    /// Total in [`UNIT`]s.
    units: u32,
}

/// Memory reserved from a [`DecodeBudget`]; returned to the pool on drop.
///
/// Hold it for as long as the decoded image is being produced (move it into
/// the blocking task that calls [`decode`](crate::decode)).
#[derive(Debug)]
#[must_use = "the reservation is released as soon as the permit is dropped"]
pub struct DecodePermit {
    _permit: OwnedSemaphorePermit,
    bytes: u64,
}

impl DecodePermit {
    /// The reserved amount in bytes (rounded up to whole KiB).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

fn to_units(bytes: u64) -> u64 {
    bytes.div_ceil(UNIT)
}

impl DecodeBudget {
    /// A budget of `total_bytes` (rounded up to whole KiB, at most 4 TiB).
    pub fn new(total_bytes: u64) -> DecodeBudget {
        let units = u32::try_from(to_units(total_bytes)).unwrap_or(u32::MAX);
        DecodeBudget {
            semaphore: Arc::new(Semaphore::new(units as usize)),
            units,
        }
    }

    /// A budget sized by [`default_decode_budget`].
    pub fn from_available_memory() -> DecodeBudget {
        DecodeBudget::new(default_decode_budget())
    }

    /// The whole budget in bytes.
    pub fn total(&self) -> u64 {
        u64::from(self.units) * UNIT
    }

    /// Bytes currently unavailable: reserved by live permits, plus any
    /// already set aside for the reservation at the head of the queue
    /// (which collects released memory until it has all it asked for).
    pub fn in_use(&self) -> u64 {
        let free = self.semaphore.available_permits() as u64;
        (u64::from(self.units).saturating_sub(free)) * UNIT
    }

    /// Reserves `bytes`, waiting up to `wait` for other decodes to release
    /// enough.
    ///
    /// Errors: [`ImageError::OverBudget`] at once when `bytes` exceeds the
    /// whole budget (waiting could never help); [`ImageError::Busy`] when
    /// there was still no room after `wait`. A zero `wait` only takes what
    /// is free right now. Cancelling the returned future (e.g. because the
    /// client went away) gives up the place in the queue and reserves
    /// nothing.
    pub async fn reserve(&self, bytes: u64, wait: Duration) -> Result<DecodePermit, ImageError> {
        let budget = self.total();
        let units = to_units(bytes);
        let units = match u32::try_from(units) {
            Ok(u) if u <= self.units => u,
            _ => {
                return Err(ImageError::OverBudget {
                    needed: bytes,
                    budget,
                })
            }
        };
        let busy = ImageError::Busy {
            needed: bytes,
            budget,
        };
        let permit = match Arc::clone(&self.semaphore).try_acquire_many_owned(units) {
            Ok(p) => p,
            // The semaphore is never closed; treat it like a full pool anyway.
            Err(TryAcquireError::Closed) => return Err(busy),
            Err(TryAcquireError::NoPermits) if wait.is_zero() => return Err(busy),
            Err(TryAcquireError::NoPermits) => {
                let acquire = Arc::clone(&self.semaphore).acquire_many_owned(units);
                match tokio::time::timeout(wait, acquire).await {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) | Err(_) => return Err(busy),
                }
            }
        };
        Ok(DecodePermit {
            _permit: permit,
            bytes: u64::from(units) * UNIT,
        })
    }
}

impl Default for DecodeBudget {
    /// Same as [`DecodeBudget::from_available_memory`].
    fn default() -> Self {
        DecodeBudget::from_available_memory()
    }
}

/// A sensible process-wide decoding budget for this machine: a quarter of
/// the memory available now, clamped to 256 MiB – 4 GiB; 1 GiB when that
/// cannot be determined.
///
/// "Available" is `MemAvailable` from `/proc/meminfo`, lowered to what the
/// cgroup (v2) memory limit still allows when the process runs in a
/// container with one, since the host's free memory means nothing to a
/// container that gets killed at its own limit. A quarter leaves the rest
/// for the models, the face store and everything else in flight.
pub fn default_decode_budget() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let cgroup_max = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok();
    let cgroup_current = std::fs::read_to_string("/sys/fs/cgroup/memory.current").ok();
    budget_from(
        meminfo.as_deref(),
        cgroup_max.as_deref(),
        cgroup_current.as_deref(),
    )
}

/// [`default_decode_budget`] on given file contents, for tests.
fn budget_from(
    meminfo: Option<&str>,
    cgroup_max: Option<&str>,
    cgroup_current: Option<&str>,
) -> u64 {
    let host = meminfo.and_then(mem_available);
    let cgroup = cgroup_max
        .and_then(|m| m.trim().parse::<u64>().ok()) // "max" means no limit
        .map(|max| {
            let used = cgroup_current
                .and_then(|c| c.trim().parse::<u64>().ok())
                .unwrap_or(0);
            max.saturating_sub(used)
        });
    let available = match (host, cgroup) {
        (Some(h), Some(c)) => h.min(c),
        (Some(h), None) => h,
        (None, _) => return FALLBACK_DEFAULT,
    };
    (available / 4).clamp(MIN_DEFAULT, MAX_DEFAULT)
}

/// `MemAvailable` in bytes from the text of `/proc/meminfo`.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?;
    let mut parts = line.split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    let unit = match parts.next() {
        Some("kB") => 1024,
        None => 1,
        Some(_) => return None,
    };
    value.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       24576000 kB\nMemFree:         1000000 kB\nMemAvailable:    8388608 kB\nBuffers:          1234 kB\n";

    #[test]
    fn default_budget_is_a_quarter_of_available_clamped() {
        // 8 GiB available -> 2 GiB.
        assert_eq!(budget_from(Some(MEMINFO), None, None), 2 << 30);
        // Unreadable -> 1 GiB.
        assert_eq!(budget_from(None, None, None), 1 << 30);
        assert_eq!(budget_from(Some("garbage"), None, None), 1 << 30);
        // Tiny machine -> floor; huge machine -> ceiling.
        let small = "MemAvailable:     102400 kB\n";
        assert_eq!(budget_from(Some(small), None, None), 256 << 20);
        let big = "MemAvailable:   268435456 kB\n";
        assert_eq!(budget_from(Some(big), None, None), 4 << 30);
    }

    #[test]
    fn cgroup_limit_lowers_the_default() {
        // 8 GiB on the host, but the container may use 2 GiB and uses 400 MiB.
        let max = format!("{}\n", 2u64 << 30);
        let current = format!("{}\n", 400u64 << 20);
        assert_eq!(
            budget_from(Some(MEMINFO), Some(&max), Some(&current)),
            ((2u64 << 30) - (400 << 20)) / 4
        );
        assert_eq!(
            budget_from(Some(MEMINFO), Some("max\n"), Some(&current)),
            2 << 30
        );
    }
}
