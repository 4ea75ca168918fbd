//! `pouch push`: uploads a stored image (config, layers, manifest) to a registry.
//! Blobs the registry already has are not uploaded again.

use super::pull::{PullError, PullOptions, Registry};
use super::reference::ImageRef;
use super::store::ContentStore;

/// What a push did.
#[derive(Debug, Clone)]
pub struct PushResult {
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs the registry already had.
    pub skipped: usize,
    /// The manifest digest at the destination.
    pub digest: String,
}

/// Pushes the image recorded as `source` to `dest`.
pub async fn push(
    store: &ContentStore,
    source: &str,
    dest: &ImageRef,
    opts: &PullOptions,
) -> Result<PushResult, PullError> {
    let rec = store
        .images()?
        .into_iter()
        .find(|r| r.name == source)
        .ok_or_else(|| super::store::StoreError::NoSuchImage(source.to_string()))?;
    let image = store.image(&rec.descriptor)?;
    let mut reg = Registry::new(dest, opts)?;
    let r = dest.to_client();
    // Authenticate for push (also settles HTTP vs HTTPS through a manifest probe).
    reg.probe_for_push(dest).await?;
    let mut uploaded = 0;
    let mut skipped = 0;
    let mut blobs = vec![image.manifest.config.clone()];
    blobs.extend(image.manifest.layers.iter().cloned());
    for b in &blobs {
        let digest = b.digest.to_string();
        if reg.client().blob_exists(&r, &digest).await.unwrap_or(false) {
            skipped += 1;
            continue;
        }
        let data = store.read_blob(&b.digest)?;
        reg.client()
            .push_blob(&r, data, &digest)
            .await
            .map_err(|e| reg.error(e, &format!("upload blob {digest}")))?;
        uploaded += 1;
    }
    let mbytes = store.read_blob(&rec.descriptor.digest)?;
    let ct = if rec.descriptor.media_type.is_empty() {
        super::manifest::OCI_MANIFEST.to_string()
    } else {
        rec.descriptor.media_type.clone()
    };
    let url = reg
        .client()
        .push_manifest_raw(
            &r,
            mbytes,
            ct.parse().map_err(|e| PullError::Other(format!("{e}")))?,
        )
        .await
        .map_err(|e| reg.error(e, "upload manifest"))?;
    tracing::debug!(url, "pushed manifest");
    Ok(PushResult {
        uploaded,
        skipped,
        digest: rec.descriptor.digest.to_string(),
    })
}
