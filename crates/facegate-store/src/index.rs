//! Exact cosine search over L2-normalised vectors held contiguously.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

use crate::error::{Result, StoreError};
use crate::store::{FaceBox, FaceRecord};
use crate::time::UtcMillis;
use crate::validate::{format_uuid, parse_uuid};

/// Longest embedding accepted; far above any face model, it only bounds
/// memory for hostile input.
pub const MAX_EMBEDDING_DIM: usize = 4096;

/// Dot product of two equal-length slices.
///
/// Eight independent accumulators let the compiler vectorise the loop; the
/// summation order is fixed, so equal inputs always give equal scores.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// `v` scaled to unit L2 norm. `Err(InvalidParam)` for an empty, over-long,
/// non-finite or all-zero vector.
pub fn normalize(v: &[f32]) -> Result<Vec<f32>> {
    if v.is_empty() || v.len() > MAX_EMBEDDING_DIM {
        return Err(StoreError::InvalidParam(format!(
            "embedding must have 1-{MAX_EMBEDDING_DIM} dimensions"
        )));
    }
    if !v.iter().all(|x| x.is_finite()) {
        return Err(StoreError::InvalidParam(
            "embedding has a non-finite value".into(),
        ));
    }
    // f64 so huge or tiny components neither overflow nor underflow.
    let norm = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Err(StoreError::InvalidParam("embedding has zero norm".into()));
    }
    Ok(v.iter().map(|&x| (f64::from(x) / norm) as f32).collect())
}

/// Cosine similarity of two embeddings (normalised here), in [-1, 1], as
/// the index computes it. For verify and compare, which need no index.
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> Result<f32> {
    if a.len() != b.len() {
        return Err(StoreError::DimensionMismatch {
            expected: a.len(),
            got: b.len(),
        });
    }
    facegate_core::cosine_similarity(a, b)
        .ok_or_else(|| StoreError::InvalidParam("embedding has zero norm".into()))
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    /// The matching face.
    pub face: FaceRecord,
    /// Cosine similarity to the query, in [-1, 1].
    pub score: f32,
}

/// Largest magnitude of a stored vector's int8 code.
const CODE_MAX: f32 = 127.0;

/// Rows scored by the int8 pre-scan before their bounds are checked;
/// small enough that the buffer of integer dot products stays in L1.
const BLOCK: usize = 256;

/// Per-row quantisation data: `v ≈ scale * code`, with the residual norm
/// `err >= ||v - scale*code||` and `norm >= ||scale*code||`, both rounded up.
#[derive(Debug, Clone, Copy)]
struct RowAux {
    scale: f32,
    err: f32,
    norm: f32,
}

/// `x` (a non-negative f64) as an f32 that is certainly not smaller.
fn round_up(x: f64) -> f32 {
    // The 1e-6 inflation dwarfs f64->f32 rounding (2^-24 relative); NaN
    // becomes infinity so a broken row is always re-ranked exactly.
    if x.is_nan() {
        return f32::INFINITY;
    }
    (x * (1.0 + 1e-6) + 1e-30) as f32
}

/// Quantises `v` to int8 codes appended to `codes`, returning its bounds.
fn quantize_row(v: &[f32], codes: &mut Vec<i8>) -> RowAux {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    if !(max > 0.0 && max.is_finite()) {
        // Never reached for normalised input; an infinite error bound makes
        // the exact re-rank decide alone.
        codes.extend(std::iter::repeat_n(0i8, v.len()));
        return RowAux {
            scale: 0.0,
            err: f32::INFINITY,
            norm: 0.0,
        };
    }
    let scale = max / CODE_MAX;
    let (mut err2, mut norm2) = (0f64, 0f64);
    for &x in v {
        let c = (x / scale).round().clamp(-CODE_MAX, CODE_MAX);
        codes.push(c as i8);
        // f32 scale times an 8-bit code is exact in f64.
        let approx = f64::from(scale) * f64::from(c);
        err2 += (f64::from(x) - approx).powi(2);
        norm2 += approx * approx;
    }
    RowAux {
        scale,
        err: round_up(err2.sqrt()),
        norm: round_up(norm2.sqrt()),
    }
}

/// A query quantised to i16 for the pre-scan, with the bound terms the
/// pruning needs: `err >= ||q - scale*code||`, `norm >= ||q||`.
struct QueryCode {
    code: Vec<i16>,
    scale: f32,
    err: f32,
    norm: f32,
}

impl QueryCode {
    fn new(q: &[f32]) -> Self {
        // i16 codes keep the query's own error ~256x below the rows'; the
        // cap keeps sum |code_q * code_v| <= dim * qmax * 127 < 2^31, so
        // the i32 pre-scan sum cannot overflow.
        let qmax = (i32::MAX as usize / (q.len().max(1) * CODE_MAX as usize)).min(32_767) as f32;
        let max = q.iter().fold(0f32, |m, x| m.max(x.abs()));
        let norm = round_up(q.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt());
        if !(max > 0.0 && max.is_finite()) {
            return QueryCode {
                code: vec![0; q.len()],
                scale: 0.0,
                err: f32::INFINITY,
                norm,
            };
        }
        let scale = max / qmax;
        let mut err2 = 0f64;
        let code = q
            .iter()
            .map(|&x| {
                let c = (x / scale).round().clamp(-qmax, qmax);
                err2 += (f64::from(x) - f64::from(scale) * f64::from(c)).powi(2);
                c as i16
            })
            .collect();
        QueryCode {
            code,
            scale,
            err: round_up(err2.sqrt()),
            norm,
        }
    }
}

/// Integer dot product for the portable (SSE2) build: 16 independent lanes
/// let LLVM vectorise without a cross-lane reduction per element.
#[inline(always)]
fn dot_code_lanes(q: &[i16], v: &[i8]) -> i32 {
    let mut acc = [0i32; 16];
    let mut cq = q.chunks_exact(16);
    let mut cv = v.chunks_exact(16);
    for (x, y) in (&mut cq).zip(&mut cv) {
        for i in 0..16 {
            acc[i] += i32::from(x[i]) * i32::from(y[i]);
        }
    }
    let tail: i32 = cq
        .remainder()
        .iter()
        .zip(cv.remainder())
        .map(|(&a, &b)| i32::from(a) * i32::from(b))
        .sum();
    acc.iter().sum::<i32>() + tail
}

/// Integer dot product as a plain reduction, which LLVM turns into
/// `vpmaddwd` when AVX2 is enabled (measured faster than the lane form).
#[inline(always)]
fn dot_code_reduce(q: &[i16], v: &[i8]) -> i32 {
    q.iter()
        .zip(v)
        .map(|(&a, &b)| i32::from(a) * i32::from(b))
        .sum()
}

/// Writes the integer dot products of `q` with each row of `codes`.
#[inline(always)]
fn prescan_generic<const REDUCE: bool>(q: &[i16], codes: &[i8], out: &mut [i32]) {
    for (o, v) in out.iter_mut().zip(codes.chunks_exact(q.len())) {
        *o = if REDUCE {
            dot_code_reduce(q, v)
        } else {
            dot_code_lanes(q, v)
        };
    }
}

/// Starts loading `bytes` bytes from `p` into cache. Only a hint: it never
/// faults and never changes a result.
#[inline(always)]
fn prefetch(p: *const u8, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // Every 64-byte line, including a partial last one.
        let last = std::iter::once(bytes.saturating_sub(1));
        for off in (0..bytes).step_by(64).chain(last) {
            // SAFETY: `_mm_prefetch` needs only SSE, which every x86_64 CPU
            // has; a prefetch never faults whatever the address, and
            // `wrapping_add` keeps the pointer arithmetic defined.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off).cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, bytes);
}

/// [`prefetch`] of the memory `v` occupies.
#[inline(always)]
fn prefetch_val<T: ?Sized>(v: &T) {
    prefetch((v as *const T).cast(), std::mem::size_of_val(v));
}

/// How far ahead of the rows being pre-scanned their codes are
/// prefetched, in bytes. Measured at 1M faces: the pre-scan ran at about
/// half the memory bandwidth on the hardware prefetcher alone.
const PRESCAN_AHEAD: usize = 4096;

/// How many items ahead a loop over rows spread across the group (re-rank,
/// hit records) prefetches: each such row is a cache and TLB miss, and
/// asking early overlaps those waits instead of paying them in turn.
const PREFETCH_AHEAD: usize = 8;

/// Calls `f` on each item in turn, first calling `ahead` (a prefetch) on
/// the item [`PREFETCH_AHEAD`] places later; stops when `f` returns false.
#[inline(always)]
fn with_lookahead<T>(items: &[T], mut ahead: impl FnMut(&T), mut f: impl FnMut(&T) -> bool) {
    for x in items.iter().take(PREFETCH_AHEAD) {
        ahead(x);
    }
    for (i, x) in items.iter().enumerate() {
        if let Some(a) = items.get(i + PREFETCH_AHEAD) {
            ahead(a);
        }
        if !f(x) {
            return;
        }
    }
}

/// AVX2 pre-scan. Four rows at a time share each load of the query and
/// one horizontal reduction (per row it was a third of the work), so the
/// scan keeps up better with memory.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn prescan_avx2(q: &[i16], codes: &[i8], out: &mut [i32]) {
    use std::arch::x86_64::*;
    let d = q.len();
    if !d.is_multiple_of(16) {
        prescan_generic::<true>(q, codes, out);
        return;
    }
    let mut outs = out.chunks_exact_mut(4);
    let mut quads = codes.chunks_exact(4 * d);
    for (o, quad) in (&mut outs).zip(&mut quads) {
        prefetch(
            quad.as_ptr().cast::<u8>().wrapping_add(PRESCAN_AHEAD),
            quad.len(),
        );
        let (r0, rest) = quad.split_at(d);
        let (r1, rest) = rest.split_at(d);
        let (r2, r3) = rest.split_at(d);
        let mut acc = [_mm256_setzero_si256(); 4];
        for (j, qc) in q.chunks_exact(16).enumerate() {
            let at = j * 16..j * 16 + 16;
            // SAFETY: each slice holds 16 elements (16 i16 = 32 bytes, or
            // 16 i8 = 16 bytes), exactly what the unaligned load reads.
            let qv = unsafe { _mm256_loadu_si256(qc.as_ptr().cast()) };
            for (a, r) in acc.iter_mut().zip([r0, r1, r2, r3]) {
                let v = unsafe { _mm_loadu_si128(r[at.clone()].as_ptr().cast()) };
                // i8 -> i16, then pairwise i16 products summed into i32.
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(_mm256_cvtepi8_epi16(v), qv));
            }
        }
        // Lane sums of rows 0-3 -> one i32 per row.
        let s = _mm256_hadd_epi32(
            _mm256_hadd_epi32(acc[0], acc[1]),
            _mm256_hadd_epi32(acc[2], acc[3]),
        );
        let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
        let mut sums = [0i32; 4];
        // SAFETY: `sums` is 16 bytes, what the unaligned store writes.
        unsafe { _mm_storeu_si128(sums.as_mut_ptr().cast(), s) };
        o.copy_from_slice(&sums);
    }
    prescan_generic::<true>(q, quads.remainder(), outs.into_remainder());
}

/// Whether the AVX2 pre-scan may run on this CPU (detected once).
#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static AVX2: OnceLock<bool> = OnceLock::new();
    *AVX2.get_or_init(|| std::arch::is_x86_feature_detected!("avx2"))
}

/// Integer pre-scan of one block of rows, using AVX2 when the CPU has it.
/// Integer sums are exact, so both paths give identical results.
fn prescan(q: &[i16], codes: &[i8], out: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2 (checked at run time just above),
        // which is the only requirement of the target_feature function.
        unsafe { prescan_avx2(q, codes, out) };
        return;
    }
    prescan_generic::<false>(q, codes, out);
}

/// Where a face's image id is kept: as its 128-bit value when it is a
/// canonical UUID (always, for ids the gallery makes), else as text.
#[derive(Debug, Clone)]
enum ImageRef {
    Uuid(u128),
    Text(Box<str>),
}

/// A face's metadata without per-face heap strings: face id lives in
/// `ids`, model versions are interned. Halves resident memory per face
/// compared with a stored [`FaceRecord`].
#[derive(Debug, Clone)]
struct Meta {
    image: ImageRef,
    external_image_id: Option<Box<str>>,
    bbox: FaceBox,
    confidence: f32,
    created_at: UtcMillis,
    model: u32,
}

/// The in-memory index of one group, built for exact search at speed.
///
/// Vectors are row-major in one `Vec<f32>` with a parallel int8 copy (one
/// scale and error bound per row). A search pre-scans the int8 codes,
/// keeps every row whose *upper bound* on the exact f32 score can still
/// enter the result, and scores only those with the exact f32 [`dot`]; so
/// hits, scores and order equal a brute-force f32 scan bit for bit.
/// Deletion is `swap_remove` on every parallel vector.
#[derive(Debug, Default)]
pub(crate) struct GroupIndex {
    dim: usize,
    vectors: Vec<f32>,
    codes: Vec<i8>,
    aux: Vec<RowAux>,
    ids: Vec<u128>,
    meta: Vec<Meta>,
    models: Vec<Box<str>>,
    pos: HashMap<u128, u32>,
    /// Largest row norm ever stored (never lowered): scales the
    /// floating-point slack of the bound.
    max_norm: f32,
}

/// A row that passed the pre-scan, with bounds on its exact score; once
/// scored exactly (`exact`), `hi == lo ==` the score. Never NaN: a NaN
/// bound is widened to an infinite one.
#[derive(Debug, Clone, Copy)]
struct Bounded {
    hi: f32,
    lo: f32,
    row: u32,
    exact: bool,
}

/// An exactly scored row.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    score: f32,
    row: u32,
}

/// A score ordered by `total_cmp`, for the re-rank's heap of best scores.
#[derive(Debug, Clone, Copy)]
struct Score(f32);

impl PartialEq for Score {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Score {}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Smallest pre-scan buffer; pruning a small one often would cost more
/// than it saves.
const MIN_KEPT: usize = 1024;

/// Largest pre-scan buffer, as a multiple of the limit (with [`MIN_KEPT`]
/// as its floor); past it, kept rows are scored exactly instead.
const MAX_KEPT_PER_HIT: usize = 16;

/// The `k`-th largest lower bound in `kept` (reordering it), or -inf with
/// fewer than `k` rows.
fn kth_lo(kept: &mut [Bounded], k: usize) -> f32 {
    if k == 0 || kept.len() < k {
        return f32::NEG_INFINITY;
    }
    kept.select_nth_unstable_by(k - 1, |a, b| b.lo.total_cmp(&a.lo));
    kept[k - 1].lo
}

impl GroupIndex {
    /// Number of faces held.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Vector length of the group; `None` while it is empty (any length is
    /// then accepted).
    pub(crate) fn dim(&self) -> Option<usize> {
        (!self.ids.is_empty()).then_some(self.dim)
    }

    // Used by the search_bench example only.
    #[allow(dead_code)]
    /// Reserves room for `additional` more faces of `dim` dimensions, so a
    /// bulk load does not reallocate repeatedly.
    pub(crate) fn reserve(&mut self, additional: usize, dim: usize) {
        self.vectors.reserve(additional.saturating_mul(dim));
        self.codes.reserve(additional.saturating_mul(dim));
        self.aux.reserve(additional);
        self.ids.reserve(additional);
        self.meta.reserve(additional);
        self.pos.reserve(additional);
    }

    fn intern_model(&mut self, model: &str) -> u32 {
        // A group has one model version in practice; search from the end
        // so the current one is found first.
        if let Some(i) = self.models.iter().rposition(|m| &**m == model) {
            return i as u32;
        }
        self.models.push(model.into());
        (self.models.len() - 1) as u32
    }

    /// Adds a face whose vector is already normalised and whose length was
    /// checked against [`Self::dim`].
    pub(crate) fn push(&mut self, record: FaceRecord, normalized: &[f32]) -> Result<()> {
        let id = parse_uuid(&record.face_id)
            .ok_or_else(|| StoreError::Corrupt(format!("face id {:?}", record.face_id)))?;
        if normalized.is_empty() {
            return Err(StoreError::InvalidParam("empty embedding".into()));
        }
        if self.ids.is_empty() {
            self.dim = normalized.len();
            self.vectors.clear();
            self.codes.clear();
        } else if normalized.len() != self.dim {
            return Err(StoreError::DimensionMismatch {
                expected: self.dim,
                got: normalized.len(),
            });
        }
        if self.pos.contains_key(&id) {
            return Ok(());
        }
        let row = u32::try_from(self.ids.len())
            .map_err(|_| StoreError::InvalidParam("group index is full".into()))?;
        let model = self.intern_model(&record.model_version);
        let image = match parse_uuid(&record.image_id) {
            // Only canonical ids round-trip through format_uuid.
            Some(v) => ImageRef::Uuid(v),
            None => ImageRef::Text(record.image_id.into()),
        };
        let aux = quantize_row(normalized, &mut self.codes);
        self.max_norm = self.max_norm.max(aux.norm + aux.err);
        self.aux.push(aux);
        self.vectors.extend_from_slice(normalized);
        self.pos.insert(id, row);
        self.ids.push(id);
        self.meta.push(Meta {
            image,
            external_image_id: record.external_image_id.map(String::into_boxed_str),
            bbox: record.bbox,
            confidence: record.confidence,
            created_at: record.created_at,
            model,
        });
        Ok(())
    }

    /// Removes a face; `false` if it was not there.
    pub(crate) fn remove(&mut self, face_id: &str) -> bool {
        let Some(id) = parse_uuid(face_id) else {
            return false;
        };
        let Some(row) = self.pos.remove(&id) else {
            return false;
        };
        let row = row as usize;
        let last = self.ids.len() - 1;
        let d = self.dim;
        self.ids.swap_remove(row);
        self.meta.swap_remove(row);
        self.aux.swap_remove(row);
        if row != last {
            self.vectors.copy_within(last * d..(last + 1) * d, row * d);
            self.codes.copy_within(last * d..(last + 1) * d, row * d);
            // `row` came from `pos`, which holds u32 values.
            self.pos.insert(self.ids[row], row as u32);
        }
        self.vectors.truncate(last * d);
        self.codes.truncate(last * d);
        true
    }

    /// The full record of `row`.
    fn record(&self, row: usize) -> FaceRecord {
        let m = &self.meta[row];
        FaceRecord {
            face_id: format_uuid(self.ids[row]),
            image_id: match &m.image {
                ImageRef::Uuid(v) => format_uuid(*v),
                ImageRef::Text(s) => s.to_string(),
            },
            external_image_id: m.external_image_id.as_deref().map(str::to_owned),
            bbox: m.bbox,
            confidence: m.confidence,
            created_at: m.created_at,
            model_version: self
                .models
                .get(m.model as usize)
                .map(|s| s.to_string())
                .unwrap_or_default(),
        }
    }

    /// Top `limit` faces by cosine to `query` (already normalised, length
    /// checked), score descending then face id ascending, only those with
    /// score >= `min_score`, never `exclude`.
    ///
    /// Exactly the result of scoring every row with [`dot`]; allocates
    /// O(limit + dim), never O(len).
    pub(crate) fn search(
        &self,
        query: &[f32],
        limit: usize,
        min_score: f32,
        exclude: Option<u128>,
    ) -> Vec<SearchHit> {
        let rows = self.search_rows(query, limit, min_score, exclude);
        let mut hits = Vec::with_capacity(rows.len());
        with_lookahead(
            &rows,
            |c| {
                prefetch_val(&self.ids[c.row as usize]);
                prefetch_val(&self.meta[c.row as usize]);
            },
            |c| {
                hits.push(SearchHit {
                    face: self.record(c.row as usize),
                    score: c.score,
                });
                true
            },
        );
        hits
    }

    // Used by tests and the search_bench example, not by the gallery.
    #[cfg_attr(not(test), allow(dead_code))]
    /// [`Self::search`] as (face id, score) pairs, without building records.
    pub(crate) fn search_ids(
        &self,
        query: &[f32],
        limit: usize,
        min_score: f32,
        exclude: Option<u128>,
    ) -> Vec<(u128, f32)> {
        self.search_rows(query, limit, min_score, exclude)
            .into_iter()
            .map(|c| (self.ids[c.row as usize], c.score))
            .collect()
    }

    /// The exact f32 score of `row`.
    fn score(&self, query: &[f32], row: usize) -> f32 {
        dot(query, &self.vectors[row * self.dim..(row + 1) * self.dim])
    }

    /// Result order: higher score first, then lower face id. Ids are
    /// unique, so the order is total and unstable sorts are deterministic;
    /// ids are loaded only on a tie.
    fn better(&self, a: &Candidate, b: &Candidate) -> Ordering {
        b.score
            .total_cmp(&a.score)
            .then_with(|| self.ids[a.row as usize].cmp(&self.ids[b.row as usize]))
    }

    /// Starts loading `row`'s f32 vector into cache.
    #[inline(always)]
    fn prefetch_row(&self, c: &Bounded) {
        if !c.exact {
            let row = c.row as usize;
            prefetch_val(&self.vectors[row * self.dim..(row + 1) * self.dim]);
        }
    }

    /// The exact score of a kept row.
    fn exact_score(&self, query: &[f32], c: &Bounded) -> f32 {
        if c.exact {
            c.hi
        } else {
            self.score(query, c.row as usize)
        }
    }

    /// Scores `rows` exactly, appending those >= `min_score` (which drops
    /// NaN, as the naive scan's filter does) to `hits`.
    fn score_all(
        &self,
        query: &[f32],
        rows: &[Bounded],
        min_score: f32,
        hits: &mut Vec<Candidate>,
    ) {
        with_lookahead(
            rows,
            |c| self.prefetch_row(c),
            |c| {
                let score = self.exact_score(query, c);
                if score >= min_score {
                    hits.push(Candidate { score, row: c.row });
                }
                true
            },
        );
    }

    /// The top `limit` rows, exactly scored, in result order.
    ///
    /// Two passes, so no row is scored exactly before it is known to be a
    /// likely hit. (A heap fed in row order scored ~45k rows exactly for
    /// limit 4096 over 1M faces, every row whose bound beat the heap's
    /// worst so far; this scores ~11k, those whose bound beats the result's
    /// last score.)
    ///
    /// 1. Pre-scan: bound every row's score from the int8 codes and keep
    ///    those whose upper bound reaches `cut`, the larger of `min_score`
    ///    and the `limit`-th best *lower* bound seen: at least `limit` rows
    ///    score at least that, so a row below it cannot enter the result.
    ///    The buffer is pruned with `select_nth_unstable` whenever it fills.
    /// 2. Re-rank: score the kept rows by falling upper bound, so the
    ///    likeliest hits come first and the `limit`-th best score so far
    ///    (again a lower bound on the result's last) rises early; stop at
    ///    the first row whose upper bound is under it.
    fn search_rows(
        &self,
        query: &[f32],
        limit: usize,
        min_score: f32,
        exclude: Option<u128>,
    ) -> Vec<Candidate> {
        let n = self.ids.len();
        let d = self.dim;
        if limit == 0 || n == 0 || query.len() != d || min_score.is_nan() {
            return Vec::new();
        }
        let q = QueryCode::new(query);
        // score(row) lies within est ± e, est = scale_q*scale_r*D and
        // e = norm_q*err_r + err_q*norm_r + slack: the real dot differs
        // from q̂·v̂ by at most ||q||·||v-v̂|| + ||q-q̂||·||v̂||
        // (Cauchy-Schwarz), and `slack` covers the f32 rounding of both
        // `dot` (at most ~(dim/8+4) ulps of ||q||·||v||) and the bounds' own
        // arithmetic, with a wide margin.
        let slack =
            (d as f32 + 256.0) * f32::EPSILON * 4.0 * q.norm.max(1.0) * self.max_norm.max(1.0);
        // Compared by row, so the scan never loads ids.
        let exclude_row = exclude
            .and_then(|id| self.pos.get(&id))
            .map(|&r| r as usize);
        let k = limit.min(n);
        // Pruning keeps at most half the buffer or grows it, so each kept
        // row costs O(1) amortised; the ceiling bounds memory by O(limit).
        let mut cap = k.saturating_mul(2).max(MIN_KEPT);
        let max_cap = k.saturating_mul(MAX_KEPT_PER_HIT).max(MIN_KEPT);
        let mut kept: Vec<Bounded> = Vec::with_capacity(cap.min(n));
        let mut cut = min_score;
        let mut dots = [0i32; BLOCK];
        for (b, codes) in self.codes.chunks(BLOCK * d).enumerate() {
            let base = b * BLOCK;
            let m = codes.len() / d;
            prescan(&q.code, codes, &mut dots[..m]);
            for (j, &dq) in dots[..m].iter().enumerate() {
                let row = base + j;
                let a = &self.aux[row];
                let est = dq as f32 * (q.scale * a.scale);
                let e = q.norm * a.err + q.err * a.norm + slack;
                let hi = est + e;
                // A NaN bound compares false, so its row is kept.
                if hi < cut || Some(row) == exclude_row {
                    continue;
                }
                let lo = est - e;
                kept.push(Bounded {
                    hi: if hi.is_nan() { f32::INFINITY } else { hi },
                    lo: if lo.is_nan() { f32::NEG_INFINITY } else { lo },
                    // Rows fit u32: `push` refuses more.
                    row: row as u32,
                    exact: false,
                });
                if kept.len() >= cap {
                    cut = cut.max(kth_lo(&mut kept, k));
                    kept.retain(|c| c.hi >= cut);
                    if kept.len() > cap / 2 {
                        if cap < max_cap {
                            cap = cap.saturating_mul(2);
                        } else {
                            // Bounds too loose to tell the rows apart (many
                            // near-duplicates): score them, which makes
                            // the cut exact.
                            cut = self.keep_best_exact(query, &mut kept, k, min_score, cut);
                        }
                    }
                }
            }
        }
        cut = cut.max(kth_lo(&mut kept, k));
        kept.retain(|c| c.hi >= cut);
        let mut hits = self.rerank(query, &mut kept, k, min_score);
        if hits.len() > k {
            hits.select_nth_unstable_by(k - 1, |a, b| self.better(a, b));
            hits.truncate(k);
        }
        hits.sort_unstable_by(|a, b| self.better(a, b));
        hits
    }

    /// Scores every kept row that can still enter the top `k` (see
    /// [`Self::search_rows`], step 2); returns those scoring >= `min_score`.
    fn rerank(
        &self,
        query: &[f32],
        kept: &mut [Bounded],
        k: usize,
        min_score: f32,
    ) -> Vec<Candidate> {
        kept.sort_unstable_by(|a, b| b.hi.total_cmp(&a.hi));
        let mut hits = Vec::with_capacity(kept.len().min(k.saturating_mul(3)));
        // The k best scores so far, worst on top.
        let mut best: BinaryHeap<Reverse<Score>> = BinaryHeap::with_capacity(k);
        with_lookahead(
            kept,
            |c| self.prefetch_row(c),
            |c| {
                if let Some(Reverse(Score(worst))) = best.peek() {
                    // k rows score at least `worst`, and this row's upper
                    // bound, like every later one's, is below it.
                    if best.len() == k && c.hi < *worst {
                        return false;
                    }
                }
                let score = self.exact_score(query, c);
                if score >= min_score {
                    hits.push(Candidate { score, row: c.row });
                    if best.len() < k {
                        best.push(Reverse(Score(score)));
                    } else if let Some(mut worst) = best.peek_mut() {
                        if score > worst.0 .0 {
                            *worst = Reverse(Score(score));
                        }
                    }
                }
                true
            },
        );
        hits
    }

    /// Scores all kept rows exactly and keeps the `k` best, returning the
    /// raised cut; memory stays O(k) however alike the rows are.
    fn keep_best_exact(
        &self,
        query: &[f32],
        kept: &mut Vec<Bounded>,
        k: usize,
        min_score: f32,
        cut: f32,
    ) -> f32 {
        let mut hits = Vec::with_capacity(kept.len());
        self.score_all(query, kept, min_score, &mut hits);
        if hits.len() > k {
            hits.select_nth_unstable_by(k - 1, |a, b| self.better(a, b));
            hits.truncate(k);
        }
        kept.clear();
        kept.extend(hits.iter().map(|h| Bounded {
            hi: h.score,
            lo: h.score,
            row: h.row,
            exact: true,
        }));
        // k rows score at least the worst of them: it bounds the last hit.
        if hits.len() == k {
            cut.max(hits.iter().fold(f32::INFINITY, |m, h| m.min(h.score)))
        } else {
            cut
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FaceBox;
    use crate::time::UtcMillis;
    use crate::validate::format_uuid;

    fn rec(id: u128) -> FaceRecord {
        FaceRecord {
            face_id: format_uuid(id),
            image_id: format_uuid(0),
            external_image_id: None,
            bbox: FaceBox {
                x0: 0.0,
                y0: 0.0,
                x1: 1.0,
                y1: 1.0,
            },
            confidence: 1.0,
            created_at: UtcMillis(0),
            model_version: "m".into(),
        }
    }

    #[test]
    fn dot_matches_f64() {
        let a: Vec<f32> = (0..131).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..131).map(|i| (i as f32 * 0.11).cos()).collect();
        let exact: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        assert!((f64::from(dot(&a, &b)) - exact).abs() < 1e-4);
    }

    #[test]
    fn normalize_rejects_bad_vectors() {
        assert!(normalize(&[]).is_err());
        assert!(normalize(&[0.0, 0.0]).is_err());
        assert!(normalize(&[f32::NAN, 1.0]).is_err());
        assert!(normalize(&[f32::INFINITY]).is_err());
        assert!(normalize(&vec![1.0; MAX_EMBEDDING_DIM + 1]).is_err());
        let n = normalize(&[3.0, 4.0]).unwrap();
        assert!((n[0] - 0.6).abs() < 1e-6 && (n[1] - 0.8).abs() < 1e-6);
        let big = normalize(&[f32::MAX, f32::MAX]).unwrap();
        assert!((big[0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    }

    #[test]
    fn swap_remove_keeps_rows_consistent() {
        let mut ix = GroupIndex::default();
        for i in 1..=5u128 {
            let v = normalize(&[i as f32, 1.0]).unwrap();
            ix.push(rec(i), &v).unwrap();
        }
        assert!(ix.remove(&format_uuid(2)));
        assert!(!ix.remove(&format_uuid(2)));
        assert!(!ix.remove("not-a-uuid"));
        assert_eq!(ix.len(), 4);
        for i in [1u128, 3, 4, 5] {
            let q = normalize(&[i as f32, 1.0]).unwrap();
            let hits = ix.search(&q, 1, -1.0, None);
            assert_eq!(hits[0].face.face_id, format_uuid(i));
        }
        assert!(matches!(
            ix.push(rec(9), &[1.0]),
            Err(StoreError::DimensionMismatch { .. })
        ));
        for i in [1u128, 3, 4, 5] {
            assert!(ix.remove(&format_uuid(i)));
        }
        assert_eq!(ix.dim(), None);
        ix.push(rec(9), &[1.0]).unwrap();
        assert_eq!(ix.dim(), Some(1));
    }

    #[test]
    fn ties_break_by_id() {
        let mut ix = GroupIndex::default();
        for i in [5u128, 3, 9, 1] {
            ix.push(rec(i), &[1.0, 0.0]).unwrap();
        }
        let ids: Vec<_> = ix
            .search(&[1.0, 0.0], 3, 0.5, None)
            .into_iter()
            .map(|h| h.face.face_id)
            .collect();
        assert_eq!(ids, vec![format_uuid(1), format_uuid(3), format_uuid(5)]);
    }

    use facegate_test_support::rng::SplitMix64 as Rng;

    fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
        a.iter().zip(b).map(|(x, y)| x + y).collect()
    }

    /// The index under test plus the plain list a naive scan runs over.
    struct Fixture {
        ix: GroupIndex,
        rows: Vec<(u128, Vec<f32>)>,
    }

    impl Fixture {
        fn new(vectors: Vec<Vec<f32>>, rng: &mut Rng) -> Self {
            let mut ix = GroupIndex::default();
            let mut rows = Vec::new();
            for v in vectors {
                let id = u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64());
                let n = normalize(&v).unwrap();
                ix.push(rec(id), &n).unwrap();
                rows.push((id, n));
            }
            Fixture { ix, rows }
        }

        fn remove_some(&mut self, rng: &mut Rng, count: usize) {
            for _ in 0..count.min(self.rows.len()) {
                let (id, _) = self.rows.swap_remove(rng.below(self.rows.len()));
                assert!(self.ix.remove(&format_uuid(id)));
            }
        }

        fn naive(&self, q: &[f32], limit: usize, min: f32, ex: Option<u128>) -> Vec<(u128, f32)> {
            let mut all: Vec<(u128, f32)> = self
                .rows
                .iter()
                .filter(|(id, _)| Some(*id) != ex)
                .map(|(id, v)| (*id, dot(q, v)))
                .filter(|(_, s)| *s >= min)
                .collect();
            all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            all.truncate(limit);
            all
        }

        /// Compares ids and score bits with the naive scan.
        fn check(&self, q: &[f32], limit: usize, min: f32, ex: Option<u128>) {
            let got = self.ix.search_ids(q, limit, min, ex);
            let want = self.naive(q, limit, min, ex);
            let bits = |v: &[(u128, f32)]| -> Vec<(u128, u32)> {
                v.iter().map(|(i, s)| (*i, s.to_bits())).collect()
            };
            assert_eq!(bits(&got), bits(&want), "limit {limit} min {min}");
        }

        fn check_all(&self, queries: &[Vec<f32>], limits: &[usize], mins: &[f32]) {
            for (k, q) in queries.iter().enumerate() {
                let q = normalize(q).unwrap();
                // Exclude a stored face on every other query.
                let ex =
                    (k % 2 == 1 && !self.rows.is_empty()).then(|| self.rows[k % self.rows.len()].0);
                for &limit in limits {
                    for &min in mins {
                        self.check(&q, limit, min, ex);
                    }
                }
            }
        }
    }

    /// Face-like data: a shared mean direction, per-person offsets and
    /// per-photo noise, so cosines are mostly 0.8 (other people) to 0.92
    /// (same person).
    fn clustered(rng: &mut Rng, dim: usize, people: usize, n: usize) -> Vec<Vec<f32>> {
        let s = 1.0 / (dim as f32).sqrt();
        let mean = rng.normal_vector(dim, s);
        let centres: Vec<Vec<f32>> = (0..people)
            .map(|_| add(&mean, &rng.normal_vector(dim, s * 0.387)))
            .collect();
        (0..n)
            .map(|_| {
                let c = &centres[rng.below(people)];
                add(c, &rng.normal_vector(dim, s * 0.316))
            })
            .collect()
    }

    #[test]
    fn matches_naive_scan_on_random_data() {
        let mut rng = Rng(1);
        for dim in [1usize, 3, 17, 128, 130] {
            let vs: Vec<_> = (0..2000).map(|_| rng.normal_vector(dim, 1.0)).collect();
            let mut fx = Fixture::new(vs, &mut rng);
            let qs: Vec<_> = (0..8).map(|_| rng.normal_vector(dim, 1.0)).collect();
            fx.check_all(&qs, &[1, 10, 100, 4096], &[-1.0, 0.0, 0.3]);
            fx.remove_some(&mut rng, 700);
            fx.check_all(&qs, &[1, 10, 4096], &[-1.0, 0.2]);
        }
    }

    #[test]
    fn matches_naive_scan_on_clustered_data() {
        let mut rng = Rng(2);
        let vs = clustered(&mut rng, 128, 300, 12_000);
        let mut fx = Fixture::new(vs, &mut rng);
        // Queries: new photos of stored people, and stored faces themselves.
        let mut qs = clustered(&mut rng, 128, 300, 6);
        qs.extend((0..6).map(|i| fx.rows[i * 97].1.clone()));
        fx.check_all(&qs, &[1, 10, 257, 4096], &[-1.0, 0.8, 0.85, 0.9, 0.99]);
        fx.remove_some(&mut rng, 4000);
        fx.check_all(&qs, &[1, 10, 4096], &[-1.0, 0.85]);
    }

    #[test]
    fn matches_naive_scan_on_near_duplicates_and_ties() {
        // Differences far below the int8 step, plus exact duplicates under
        // distinct ids: everything hinges on the exact re-rank.
        let mut rng = Rng(3);
        let base = rng.normal_vector(128, 1.0);
        let mut vs = Vec::new();
        for _ in 0..1500 {
            let v = add(&base, &rng.normal_vector(128, 1e-4));
            for _ in 0..1 + rng.below(3) {
                vs.push(v.clone());
            }
        }
        vs.extend((0..500).map(|_| rng.normal_vector(128, 1.0)));
        let fx = Fixture::new(vs, &mut rng);
        let qs = vec![
            base.clone(),
            add(&base, &rng.normal_vector(128, 1e-3)),
            fx.rows[5].1.clone(),
        ];
        fx.check_all(&qs, &[1, 2, 10, 1000, 4096], &[-1.0, 0.99, 0.999_99]);
        // Every score tied: order is by id alone.
        let same = vec![vec![0.5f32; 16]; 300];
        let fx = Fixture::new(same, &mut rng);
        fx.check_all(&[vec![0.5; 16]], &[1, 7, 300], &[-1.0, 1.0]);
    }

    #[test]
    fn matches_naive_scan_when_bounds_cannot_separate_rows() {
        // Thousands of rows whose bounds all overlap (copies and
        // near-copies of one vector): the pre-scan buffer overflows its
        // ceiling and falls back to exact scoring mid-scan, and ties must
        // still resolve by id across that fallback.
        let mut rng = Rng(4);
        let base = rng.normal_vector(128, 1.0);
        let mut vs = Vec::new();
        for i in 0..6000 {
            if i % 2 == 0 {
                vs.push(base.clone());
            } else {
                vs.push(add(&base, &rng.normal_vector(128, 1e-5)));
            }
        }
        vs.extend((0..2000).map(|_| rng.normal_vector(128, 1.0)));
        let mut fx = Fixture::new(vs, &mut rng);
        let qs = vec![base.clone(), add(&base, &rng.normal_vector(128, 1e-2))];
        fx.check_all(&qs, &[1, 10, 100, 1000, 4096], &[-1.0, 0.999]);
        fx.remove_some(&mut rng, 3000);
        fx.check_all(&qs, &[1, 100, 4096], &[-1.0]);
    }

    #[test]
    fn search_returns_stored_records() {
        let mut ix = GroupIndex::default();
        let mut a = rec(7);
        a.image_id = "not-a-uuid".into();
        a.external_image_id = Some("label-1".into());
        a.model_version = "m2".into();
        a.created_at = UtcMillis(42);
        let b = rec(8);
        ix.push(a.clone(), &[1.0, 0.0]).unwrap();
        ix.push(b.clone(), &[0.0, 1.0]).unwrap();
        let hits = ix.search(&[1.0, 0.0], 2, -1.0, None);
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].face, a);
        assert_eq!(hits[0].score, 1.0);
        assert_eq!(hits[1].face, b);
        assert!(ix.search(&[1.0, 0.0], 2, 0.5, Some(7)).is_empty());
        // Wrong query length or NaN threshold: no hits, no panic.
        assert!(ix.search(&[1.0], 2, -1.0, None).is_empty());
        assert!(ix.search(&[1.0, 0.0], 2, f32::NAN, None).is_empty());
    }

    #[test]
    fn prescan_kernels_agree() {
        // The AVX2 kernel (four rows at a time, any remainder) against the
        // portable one and a plain sum, at extreme codes too.
        let mut rng = Rng(5);
        for dim in [1usize, 16, 128, 130] {
            for rows in [1usize, 3, 4, 5, 9, 256] {
                let q: Vec<i16> = (0..dim)
                    .map(|i| {
                        if i % 7 == 0 {
                            -32_767
                        } else {
                            rng.below(65_535) as i16
                        }
                    })
                    .collect();
                let codes: Vec<i8> = (0..dim * rows)
                    .map(|i| {
                        if i % 5 == 0 {
                            -127
                        } else {
                            (rng.below(255) as i32 - 127) as i8
                        }
                    })
                    .collect();
                let want: Vec<i32> = codes
                    .chunks_exact(dim)
                    .map(|v| {
                        q.iter()
                            .zip(v)
                            .map(|(&a, &b)| i32::from(a) * i32::from(b))
                            .sum()
                    })
                    .collect();
                let mut got = vec![0; rows];
                prescan(&q, &codes, &mut got);
                assert_eq!(got, want, "dim {dim} rows {rows}");
                prescan_generic::<false>(&q, &codes, &mut got);
                assert_eq!(got, want, "dim {dim} rows {rows}");
            }
        }
    }

    #[test]
    fn query_codes_cannot_overflow() {
        // Worst case for the i32 pre-scan: every component at full scale.
        let dim = MAX_EMBEDDING_DIM;
        let v = normalize(&vec![1.0; dim]).unwrap();
        let mut ix = GroupIndex::default();
        ix.push(rec(1), &v).unwrap();
        let neg: Vec<f32> = v.iter().map(|x| -x).collect();
        let hits = ix.search_ids(&neg, 1, -1.0, None);
        assert_eq!(hits, vec![(1, dot(&neg, &v))]);
    }
}
