//! Faces: detect, register, list, delete.

use facegate_core::Face;
use facegate_store::{AddFacesOutcome, FaceRecord, NewFace, NewFaces, Page, PageRequest};

use super::{
    audit, check_range, take_embedding, FaceOptions, FaceRef, GroupRef, ImageInput, Result,
    Service, MAX_REGISTER_LIMIT,
};
use crate::error::{ImageRole, ServiceError};

/// What to register: the image, its label, how many of its faces.
#[derive(Debug, Clone)]
pub struct RegisterRequest {
    /// The image.
    pub image: ImageInput,
    /// The client's label for the image.
    pub external_image_id: Option<String>,
    /// Register at most this many faces, largest first (required, 1-20).
    pub limit: Option<i64>,
    /// Per-face options of the report.
    pub options: FaceOptions,
}

/// What a registration did.
#[derive(Debug, Clone)]
pub struct RegisterOutcome {
    /// The embedding model.
    pub model_version: String,
    /// Added faces: stored record and the detected face.
    pub added: Vec<(FaceRecord, Face)>,
    /// Faces not added (beyond `limit`, or no room in the group).
    pub not_added: Vec<Face>,
    /// Some faces were refused for lack of room (code 40070).
    pub quota_partial: bool,
}

impl Service {
    /// Detects faces.
    pub async fn detect(&self, image: ImageInput, opts: FaceOptions) -> Result<Vec<Face>> {
        self.analyze(image, ImageRole::Image, opts.request(None))
            .await
    }

    /// Registers the largest `limit` faces of an image under the quota.
    pub async fn register(
        &self,
        group: &GroupRef,
        request: RegisterRequest,
    ) -> Result<RegisterOutcome> {
        let limit = match request.limit {
            None => return Err(ServiceError::invalid("limit is required")),
            Some(l) => check_range("limit", l, 1, MAX_REGISTER_LIMIT)?,
        };
        if let Some(ext) = &request.external_image_id {
            if !facegate_store::is_valid_external_image_id(ext) {
                return Err(ServiceError::invalid(
                    "externalImageId must match [a-zA-Z0-9_.\\-:]{1,255}",
                ));
            }
        }
        // Cheap checks before the expensive analysis.
        let model_version = self.get_group(group).await?.model_version;
        self.ensure_model_runs(group, &model_version)?;
        let mut analyze = request.options.request(Some(&model_version));
        analyze.quality_gate = self.options.register_quality_gate;
        // Only the `limit` largest faces are stored, so only they need an
        // embedding, unless the gate may refuse some of them.
        if !analyze.quality_gate {
            analyze.max_embeddings = Some(limit);
        }
        let faces = self
            .analyze(request.image, ImageRole::Image, analyze)
            .await?;
        // Faces the quality gate refused are never stored; they are reported
        // first among the faces not added.
        let (mut faces, refused): (Vec<Face>, Vec<Face>) =
            faces.into_iter().partition(|f| f.quality_issue.is_none());
        let take = limit.min(faces.len());
        let mut new_faces = Vec::with_capacity(take);
        for face in faces.iter_mut().take(take) {
            new_faces.push(NewFace {
                bbox: face.bbox,
                confidence: face.confidence,
                embedding: take_embedding(face)?,
            });
        }
        let new_faces = NewFaces {
            external_image_id: request.external_image_id,
            model_version: model_version.clone(),
            faces: new_faces,
        };
        let quota = self.options.max_faces_per_group;
        let AddFacesOutcome {
            added, not_added, ..
        } = self
            .group_store("add_faces", group, move |gal, t, g| {
                gal.add_faces(t, g, new_faces, quota)
            })
            .await?;
        audit("register", group, added.len() as u64);
        let quota_partial = !not_added.is_empty();
        let mut faces = faces.into_iter().map(|mut f| {
            f.embedding = None;
            f
        });
        let added: Vec<(FaceRecord, Face)> = added.into_iter().zip(faces.by_ref()).collect();
        // What the quota refused comes first (larger), then what was
        // beyond `limit`, then what the quality gate refused.
        Ok(RegisterOutcome {
            model_version,
            added,
            not_added: faces.chain(refused).collect(),
            quota_partial,
        })
    }

    /// Deletes one face.
    pub async fn delete_face(&self, face: &FaceRef) -> Result<()> {
        let id = face.face_id.clone();
        self.group_store("delete_face", &face.group, move |gal, t, g| {
            gal.delete_face(t, g, &id)
        })
        .await?;
        audit("delete_face", &face.group, 1);
        Ok(())
    }

    /// One page of a group's faces, newest first, with the group's model
    /// version.
    pub async fn list_faces(
        &self,
        group: &GroupRef,
        page: PageRequest,
    ) -> Result<(String, Page<FaceRecord>)> {
        self.group_store("list_faces", group, move |gal, t, g| {
            let info = gal.get_group(t, g)?;
            let page = gal.list_faces(t, g, &page)?;
            Ok((info.model_version, page))
        })
        .await
    }
}
