//! Groups: create, list, get, delete.

use facegate_store::{GroupInfo, Page, PageRequest};

use super::{audit, GroupRef, Result, Service};

impl Service {
    /// Creates a group bound to the default model version.
    pub async fn create_group(&self, group: &GroupRef) -> Result<()> {
        let (g, v) = (group.clone(), self.model_version());
        self.store("create_group", move |gal| {
            gal.create_group(&g.tenant, &g.group_id, &v)
        })
        .await?;
        audit("create_group", group, 0);
        Ok(())
    }

    /// One page of a tenant's groups.
    pub async fn list_groups(&self, tenant: &str, page: PageRequest) -> Result<Page<GroupInfo>> {
        let t = tenant.to_string();
        self.store("list_groups", move |g| g.list_groups(&t, &page))
            .await
    }

    /// One group's details.
    pub async fn get_group(&self, group: &GroupRef) -> Result<GroupInfo> {
        self.group_store("get_group", group, |gal, t, g| gal.get_group(t, g))
            .await
    }

    /// Deletes a group and its faces.
    pub async fn delete_group(&self, group: &GroupRef) -> Result<()> {
        // The count read just before is for the audit line only.
        let faces = self
            .group_store("delete_group", group, |gal, t, g| {
                let faces = gal.get_group(t, g)?.face_count;
                gal.delete_group(t, g)?;
                Ok(faces)
            })
            .await?;
        audit("delete_group", group, faces);
        Ok(())
    }
}
