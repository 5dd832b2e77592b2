//! dlib `shape_predictor` files (`shape_predictor_5_face_landmarks.dat`).
//!
//! Layout (`dlib/image_processing/shape_predictor.h`): int version 1,
//! `matrix<float,0,1>` initial shape, `vector<vector<regression_tree>>`
//! forests (a tree is `vector<split_feature{ulong idx1, ulong idx2, float
//! thresh}>` then `vector<matrix<float,0,1>>` leaves), then per cascade
//! `vector<ulong>` anchor indices and `vector<vector<float,2>>` deltas.

use facegate_vision::landmarks::{Cascade, RegressionTree, ShapePredictor, SplitFeature};

use super::reader::Reader;
use super::DlibError;

/// Smallest encodings, used to bound vector lengths before allocating.
const MIN_ULONG: usize = 2;
const MIN_FLOAT: usize = 4;
const MIN_MATRIX: usize = 4;

/// Reads a dlib shape predictor `.dat` into facegate's [`ShapePredictor`].
pub fn read_shape_predictor(bytes: &[u8]) -> Result<ShapePredictor, DlibError> {
    let mut r = Reader::new(bytes);
    r.version("shape_predictor version", &[1])?;
    let initial_shape = column(&mut r, "initial shape")?;
    let n = initial_shape.len();

    let n_cascades = r.len(MIN_ULONG, "forests")?;
    let mut forests = Vec::with_capacity(n_cascades);
    for _ in 0..n_cascades {
        let n_trees = r.len(2 * MIN_ULONG, "trees")?;
        let mut trees = Vec::with_capacity(n_trees);
        for _ in 0..n_trees {
            let n_splits = r.len(2 * MIN_ULONG + MIN_FLOAT, "splits")?;
            let mut splits = Vec::with_capacity(n_splits);
            for _ in 0..n_splits {
                splits.push(SplitFeature {
                    idx1: index(&mut r, "split idx1")?,
                    idx2: index(&mut r, "split idx2")?,
                    thresh: r.f32()?,
                });
            }
            let n_leaves = r.len(MIN_MATRIX, "leaves")?;
            if n_leaves != n_splits + 1 {
                return Err(DlibError::Invalid(format!(
                    "tree has {n_splits} splits but {n_leaves} leaves"
                )));
            }
            // Every leaf float takes at least 4 bytes: bound the allocation.
            let total = n_leaves.saturating_mul(n);
            if total.saturating_mul(MIN_FLOAT) > r.remaining() {
                return Err(DlibError::TooLarge {
                    offset: r.pos(),
                    what: "leaf values",
                    needed: total as u128 * MIN_FLOAT as u128,
                    remaining: r.remaining(),
                });
            }
            let mut leaf_values = Vec::with_capacity(total);
            for _ in 0..n_leaves {
                let leaf = column(&mut r, "leaf")?;
                if leaf.len() != n {
                    return Err(DlibError::Invalid(format!(
                        "leaf has {} values, shape has {n}",
                        leaf.len()
                    )));
                }
                leaf_values.extend(leaf);
            }
            trees.push(RegressionTree {
                splits,
                leaf_values,
            });
        }
        forests.push(trees);
    }

    let n_anchor_sets = r.len(MIN_ULONG, "anchor sets")?;
    let mut anchors = Vec::with_capacity(n_anchor_sets);
    for _ in 0..n_anchor_sets {
        let k = r.len(MIN_ULONG, "anchors")?;
        anchors.push(
            (0..k)
                .map(|_| index(&mut r, "anchor"))
                .collect::<Result<Vec<_>, _>>()?,
        );
    }
    let n_delta_sets = r.len(MIN_ULONG, "delta sets")?;
    let mut deltas = Vec::with_capacity(n_delta_sets);
    for _ in 0..n_delta_sets {
        let k = r.len(2 * MIN_FLOAT, "deltas")?;
        deltas.push(
            (0..k)
                .map(|_| Ok([r.f32()?, r.f32()?]))
                .collect::<Result<Vec<_>, DlibError>>()?,
        );
    }
    if r.remaining() != 0 {
        return Err(DlibError::TrailingBytes(r.remaining()));
    }
    if anchors.len() != forests.len() || deltas.len() != forests.len() {
        return Err(DlibError::Invalid(format!(
            "{} cascades, {} anchor sets, {} delta sets",
            forests.len(),
            anchors.len(),
            deltas.len()
        )));
    }
    let cascades = forests
        .into_iter()
        .zip(anchors)
        .zip(deltas)
        .map(|((trees, anchor_idx), deltas)| Cascade {
            anchor_idx,
            deltas,
            trees,
        })
        .collect();
    Ok(ShapePredictor::new(initial_shape, cascades)?)
}

/// A `matrix<float,0,1>` column vector.
fn column(r: &mut Reader, what: &'static str) -> Result<Vec<f32>, DlibError> {
    let offset = r.pos();
    let (_, nc, values) = r.matrix_f32()?;
    if nc != 1 && !values.is_empty() {
        return Err(DlibError::Unexpected {
            offset,
            what,
            found: format!("matrix with {nc} columns"),
        });
    }
    Ok(values)
}

/// An `unsigned long` index that must fit a u32.
fn index(r: &mut Reader, what: &'static str) -> Result<u32, DlibError> {
    let offset = r.pos();
    let v = r.u64(what)?;
    u32::try_from(v).map_err(|_| DlibError::OutOfRange {
        offset,
        value: i128::from(v),
        what,
    })
}
