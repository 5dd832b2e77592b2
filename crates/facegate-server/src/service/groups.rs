//! Groups: create, list, get, delete.

use facegate_store::{GroupInfo, Page, PageRequest};

use super::{GroupRef, Result, Service};

impl Service {
    /// Creates a group bound to the default model version.
    pub async fn create_group(&self, group: &GroupRef) -> Result<()> {
        let (g, v) = (group.clone(), self.model_version());
        self.store(move |gal| gal.create_group(&g.tenant, &g.group_id, &v))
            .await?;
        Ok(())
    }

    /// One page of a tenant's groups.
    pub async fn list_groups(&self, tenant: &str, page: PageRequest) -> Result<Page<GroupInfo>> {
        let t = tenant.to_string();
        self.store(move |g| g.list_groups(&t, &page)).await
    }

    /// One group's details.
    pub async fn get_group(&self, group: &GroupRef) -> Result<GroupInfo> {
        self.group_store(group, |gal, t, g| gal.get_group(t, g))
            .await
    }

    /// Deletes a group and its faces.
    pub async fn delete_group(&self, group: &GroupRef) -> Result<()> {
        self.group_store(group, |gal, t, g| gal.delete_group(t, g))
            .await
    }
}
