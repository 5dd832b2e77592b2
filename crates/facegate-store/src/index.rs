//! Exact cosine search over L2-normalised vectors held contiguously.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use crate::error::{Result, StoreError};
use crate::store::FaceRecord;
use crate::validate::parse_uuid;

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
    Ok(dot(&normalize(a)?, &normalize(b)?))
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    /// The matching face.
    pub face: FaceRecord,
    /// Cosine similarity to the query, in [-1, 1].
    pub score: f32,
}

/// The in-memory index of one group: vectors row-major in one `Vec`, with
/// parallel id and metadata vectors; deletion is `swap_remove`.
#[derive(Debug, Default)]
pub(crate) struct GroupIndex {
    dim: usize,
    vectors: Vec<f32>,
    ids: Vec<u128>,
    records: Vec<FaceRecord>,
    pos: HashMap<u128, usize>,
}

/// Heap entry ordered so the heap's maximum is the *worst* kept hit.
#[derive(PartialEq)]
struct Candidate {
    score: f32,
    id: u128,
    row: usize,
}

impl Eq for Candidate {}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        // Better = higher score, then lower id; worse compares greater.
        other
            .score
            .total_cmp(&self.score)
            .then(self.id.cmp(&other.id))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl GroupIndex {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Vector length of the group; `None` while it is empty (any length is
    /// then accepted).
    pub(crate) fn dim(&self) -> Option<usize> {
        (!self.ids.is_empty()).then_some(self.dim)
    }

    /// Adds a face whose vector is already normalised and whose length was
    /// checked against [`Self::dim`].
    pub(crate) fn push(&mut self, record: FaceRecord, normalized: &[f32]) -> Result<()> {
        let id = parse_uuid(&record.face_id)
            .ok_or_else(|| StoreError::Corrupt(format!("face id {:?}", record.face_id)))?;
        if self.ids.is_empty() {
            self.dim = normalized.len();
            self.vectors.clear();
        } else if normalized.len() != self.dim {
            return Err(StoreError::DimensionMismatch {
                expected: self.dim,
                got: normalized.len(),
            });
        }
        if self.pos.contains_key(&id) {
            return Ok(());
        }
        self.pos.insert(id, self.ids.len());
        self.ids.push(id);
        self.records.push(record);
        self.vectors.extend_from_slice(normalized);
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
        let last = self.ids.len() - 1;
        self.ids.swap_remove(row);
        self.records.swap_remove(row);
        if row != last {
            let (head, tail) = self.vectors.split_at_mut(last * self.dim);
            head[row * self.dim..(row + 1) * self.dim].copy_from_slice(&tail[..self.dim]);
            self.pos.insert(self.ids[row], row);
        }
        self.vectors.truncate(last * self.dim);
        true
    }

    /// Top `limit` faces by cosine to `query` (already normalised, length
    /// checked), score descending then face id ascending, only those with
    /// score >= `min_score`, never `exclude`.
    pub(crate) fn search(
        &self,
        query: &[f32],
        limit: usize,
        min_score: f32,
        exclude: Option<u128>,
    ) -> Vec<SearchHit> {
        if limit == 0 || self.ids.is_empty() {
            return Vec::new();
        }
        let mut heap: BinaryHeap<Candidate> = BinaryHeap::with_capacity(limit + 1);
        for (row, v) in self.vectors.chunks_exact(self.dim).enumerate() {
            let score = dot(query, v);
            if score < min_score {
                continue;
            }
            let id = self.ids[row];
            if Some(id) == exclude {
                continue;
            }
            let c = Candidate { score, id, row };
            if heap.len() < limit {
                heap.push(c);
            } else if let Some(worst) = heap.peek() {
                if c < *worst {
                    heap.pop();
                    heap.push(c);
                }
            }
        }
        heap.into_sorted_vec()
            .into_iter()
            .map(|c| SearchHit {
                face: self.records[c.row].clone(),
                score: c.score,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::BBox;
    use crate::time::UtcMillis;
    use crate::validate::format_uuid;

    fn rec(id: u128) -> FaceRecord {
        FaceRecord {
            face_id: format_uuid(id),
            image_id: format_uuid(0),
            external_image_id: None,
            bbox: BBox {
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
}
