//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use facegate_store::{
    BBox, Clock, Gallery, GalleryOptions, KeyRing, MasterKey, NewFace, NewFaces, UtcMillis,
};

pub const MODEL: &str = "test-model-1";

/// A clock the test moves by hand.
#[derive(Debug)]
pub struct ManualClock(pub AtomicI64);

impl ManualClock {
    pub fn new() -> Arc<Self> {
        Arc::new(ManualClock(AtomicI64::new(1_700_000_000_000)))
    }
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UtcMillis {
        UtcMillis(self.0.load(Ordering::SeqCst))
    }
}

/// SplitMix64: a tiny deterministic generator, so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn vector(&mut self, dim: usize) -> Vec<f32> {
        loop {
            let v: Vec<f32> = (0..dim).map(|_| self.unit()).collect();
            if v.iter().any(|x| *x != 0.0) {
                return v;
            }
        }
    }
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub key: MasterKey,
    pub clock: Arc<ManualClock>,
}

impl Env {
    pub fn new() -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
            key: MasterKey::generate().unwrap(),
            clock: ManualClock::new(),
        }
    }
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("data").join("facegate.db")
    }
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.db_path().display())
    }
    pub fn options(&self) -> GalleryOptions {
        GalleryOptions {
            token_ttl: Duration::from_secs(3600),
            clock: self.clock.clone(),
            rotation_batch_size: 500,
        }
    }
    pub fn open(&self) -> Gallery {
        self.open_with(KeyRing::new(&self.key))
    }
    pub fn open_with(&self, keys: KeyRing) -> Gallery {
        Gallery::open(&self.url(), keys, self.options()).unwrap()
    }
}

pub fn face(v: Vec<f32>) -> NewFace {
    NewFace {
        bbox: BBox {
            x0: 0.1,
            y0: 0.2,
            x1: 0.6,
            y1: 0.7,
        },
        confidence: 0.99,
        embedding: v,
    }
}

pub fn faces(vs: Vec<Vec<f32>>) -> NewFaces {
    NewFaces {
        external_image_id: Some("image01.jpg".into()),
        model_version: MODEL.into(),
        faces: vs.into_iter().map(face).collect(),
    }
}

/// Every byte of the database, its WAL and shared-memory files.
pub fn read_db_files(db: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let p = PathBuf::from(format!("{}{suffix}", db.display()));
        if let Ok(b) = std::fs::read(&p) {
            all.extend_from_slice(&b);
        }
    }
    all
}
