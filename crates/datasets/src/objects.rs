//! Reading objects: streaming size and BLAKE3 in bounded memory.

use futures_util::StreamExt;
use object_store::path::Path;
use object_store::ObjectStore;
use object_store::ObjectStoreExt as _;

use crate::{Blake3Digest, DatasetsError, ObjectKey};

/// Streams the object once and returns its size and BLAKE3 digest; memory stays at one chunk.
pub async fn digest(
    store: &dyn ObjectStore,
    key: &ObjectKey,
) -> Result<(u64, Blake3Digest), DatasetsError> {
    let path = Path::from(key.as_str());
    let result = store.get(&path).await.map_err(|e| match e {
        object_store::Error::NotFound { .. } => {
            DatasetsError::ObjectMissing(key.as_str().to_owned())
        }
        other => DatasetsError::Storage(other.to_string()),
    })?;
    let mut stream = result.into_stream();
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| DatasetsError::Storage(e.to_string()))?;
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    Ok((size, Blake3Digest::from_hash(hasher.finalize())))
}

/// Whether the object exists, distinguishing "missing" from "storage unreachable".
pub async fn head(
    store: &dyn ObjectStore,
    key: &ObjectKey,
) -> Result<object_store::ObjectMeta, DatasetsError> {
    store
        .head(&Path::from(key.as_str()))
        .await
        .map_err(|e| match e {
            object_store::Error::NotFound { .. } => {
                DatasetsError::ObjectMissing(key.as_str().to_owned())
            }
            other => DatasetsError::Storage(other.to_string()),
        })
}
