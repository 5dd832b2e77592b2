//! Matching: search a group (by a registered face or an image), compare
//! two images, verify an image against a registered face.

use facegate_core::Face;
use facegate_store::{FaceRecord, MAX_SEARCH_LIMIT};

use super::{
    check_range, take_embedding, FaceMatch, FaceOptions, FaceRef, GroupRef, ImageInput, Result,
    Service,
};
use crate::error::{ImageRole, ServiceError};

/// How many matches to return and from which similarity (both required).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchParams {
    /// At most this many matches (1-4096).
    pub limit: Option<i64>,
    /// Only matches at or above this similarity (1-100).
    pub threshold: Option<f32>,
}

impl SearchParams {
    fn validate(self) -> Result<(usize, f32)> {
        let limit = match self.limit {
            None => return Err(ServiceError::invalid("limit is required")),
            Some(l) => check_range("limit", l, 1, MAX_SEARCH_LIMIT as i64)?,
        };
        Ok((limit, required_threshold(self.threshold)?))
    }
}

fn required_threshold(t: Option<f32>) -> Result<f32> {
    match t {
        None => Err(ServiceError::invalid("threshold is required")),
        Some(t) if !(1.0..=100.0).contains(&t) => {
            Err(ServiceError::invalid("threshold must be between 1 and 100"))
        }
        Some(t) => Ok(t),
    }
}

/// Result of a search by image.
#[derive(Debug, Clone)]
pub struct SearchOutcome {
    /// The embedding model.
    pub model_version: String,
    /// Matches, by similarity descending.
    pub matches: Vec<FaceMatch>,
    /// The query face.
    pub source: Face,
}

/// Result of a compare.
#[derive(Debug, Clone)]
pub struct CompareOutcome {
    /// The embedding model.
    pub model_version: String,
    /// Target faces at or above the threshold, similarity descending.
    pub matched: Vec<(Face, f32)>,
    /// The other target faces, similarity descending.
    pub unmatched: Vec<(Face, f32)>,
    /// The source image's largest face.
    pub source: Face,
}

/// Result of a verify.
#[derive(Debug, Clone)]
pub struct VerifyOutcome {
    /// Similarity 0-100.
    pub similarity: f32,
    /// The registered face.
    pub face: FaceRecord,
    /// The compare image's largest face.
    pub source: Face,
}

impl Service {
    /// The matches of `query` in a group of `model`, best first.
    async fn search_embedding(
        &self,
        model: &str,
        group: &GroupRef,
        query: Vec<f32>,
        (limit, threshold): (usize, f32),
        exclude: Option<String>,
    ) -> Result<Vec<FaceMatch>> {
        // Slightly lenient cosine so rounding in the mapping never drops a
        // face whose reported similarity reaches the threshold; the exact
        // filter is applied on the reported value below.
        let min_cos = self.analyzer.cosine_for_similarity(model, threshold) - 1e-4;
        let hits = self
            .group_store("search", group, move |gal, t, g| {
                gal.search(t, g, &query, limit, min_cos, exclude.as_deref())
            })
            .await?;
        Ok(hits
            .into_iter()
            .map(|h| FaceMatch {
                similarity: self.analyzer.similarity(model, h.score).clamp(0.0, 100.0),
                face: h.face,
            })
            .filter(|m| m.similarity >= threshold)
            .collect())
    }

    /// Searches a group with a registered face (which is not in the result).
    pub async fn search_by_face(
        &self,
        face: &FaceRef,
        params: SearchParams,
    ) -> Result<Vec<FaceMatch>> {
        let params = params.validate()?;
        let model = self.get_group(&face.group).await?.model_version;
        self.ensure_model_runs(&face.group, &model)?;
        let id = face.face_id.clone();
        let query = self
            .group_store("embedding_of", &face.group, move |gal, t, g| {
                gal.embedding_of(t, g, &id)
            })
            .await?;
        self.search_embedding(
            &model,
            &face.group,
            query,
            params,
            Some(face.face_id.clone()),
        )
        .await
    }

    /// Searches a group with the largest face of an image.
    pub async fn search_by_image(
        &self,
        group: &GroupRef,
        image: ImageInput,
        params: SearchParams,
        opts: FaceOptions,
    ) -> Result<SearchOutcome> {
        let params = params.validate()?;
        let model = self.get_group(group).await?.model_version;
        self.ensure_model_runs(group, &model)?;
        let faces = self
            .analyze(image, ImageRole::Image, opts.largest_face(&model))
            .await?;
        let (source, embedding) = Self::the_face(faces, "the image")?;
        let matches = self
            .search_embedding(&model, group, embedding, params, None)
            .await?;
        Ok(SearchOutcome {
            model_version: model,
            matches,
            source,
        })
    }

    /// Compares the largest face of `source` with every face of `target`.
    pub async fn compare(
        &self,
        source: ImageInput,
        target: ImageInput,
        threshold: Option<f32>,
        opts: FaceOptions,
    ) -> Result<CompareOutcome> {
        let threshold = required_threshold(threshold)?;
        let model = self.model_version();
        // Each image is decoded and analysed under its own CPU slot.
        let (src, tgt) = tokio::join!(
            self.analyze(source, ImageRole::Source, opts.largest_face(&model)),
            self.analyze(target, ImageRole::Target, opts.request(Some(&model)))
        );
        // The source image's errors win over the target's, and both over a
        // source without a face.
        let (src, tgt) = (src?, tgt?);
        let (source, embedding) = Self::the_face(src, "sourceImage")?;
        let (mut matched, mut unmatched) = (Vec::new(), Vec::new());
        for mut face in tgt {
            let s = self.similarity(&model, &embedding, &take_embedding(&mut face)?)?;
            if s >= threshold {
                matched.push((face, s));
            } else {
                unmatched.push((face, s));
            }
        }
        matched.sort_by(|a, b| b.1.total_cmp(&a.1));
        unmatched.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(CompareOutcome {
            model_version: model,
            matched,
            unmatched,
            source,
        })
    }

    /// Compares the largest face of an image with one registered face.
    pub async fn verify(
        &self,
        face: &FaceRef,
        image: ImageInput,
        opts: FaceOptions,
    ) -> Result<VerifyOutcome> {
        let id = face.face_id.clone();
        let (record, registered) = self
            .group_store("get_face", &face.group, move |gal, t, g| {
                Ok((gal.get_face(t, g, &id)?, gal.embedding_of(t, g, &id)?))
            })
            .await?;
        self.ensure_model_runs(&face.group, &record.model_version)?;
        let faces = self
            .analyze(
                image,
                ImageRole::Image,
                opts.largest_face(&record.model_version),
            )
            .await?;
        let (source, embedding) = Self::the_face(faces, "compareImage")?;
        Ok(VerifyOutcome {
            similarity: self.similarity(&record.model_version, &embedding, &registered)?,
            face: record,
            source,
        })
    }
}
