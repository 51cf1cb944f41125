//! The artifact parts of the projection: the last version of each artifact
//! on the experiment view, and which experiments reference each blob (so
//! that deleting an experiment frees only blobs no one else uses).

use crate::events::ArtifactStored;
use std::collections::{HashMap, HashSet};
use studio_core::api::{ArtifactView, Experiment};

/// Experiments by blob digest and blob digests by experiment, counting every
/// version ever stored, not only the last one of each tag.
#[derive(Debug, Default)]
pub struct BlobIndex {
    by_digest: HashMap<String, HashSet<String>>,
    by_key: HashMap<String, HashSet<String>>,
}

impl BlobIndex {
    pub fn add(&mut self, key: &str, digest: &str) {
        self.by_digest
            .entry(digest.to_string())
            .or_default()
            .insert(key.to_string());
        self.by_key
            .entry(key.to_string())
            .or_default()
            .insert(digest.to_string());
    }

    pub fn remove_experiment(&mut self, key: &str) {
        for digest in self.by_key.remove(key).unwrap_or_default() {
            if let Some(keys) = self.by_digest.get_mut(&digest) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_digest.remove(&digest);
                }
            }
        }
    }

    /// Every blob the experiment has stored.
    pub fn digests_of(&self, key: &str) -> Vec<String> {
        self.by_key
            .get(key)
            .map(|digests| digests.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn is_referenced(&self, digest: &str) -> bool {
        self.by_digest.contains_key(digest)
    }
}

/// Records a stored artifact as the last version of its tag.
pub fn apply_stored(experiment: &mut Experiment, stored: &ArtifactStored, time: f64) {
    experiment.artifacts.insert(
        stored.tag.clone(),
        ArtifactView {
            digest: stored.digest.clone(),
            size: stored.size,
            files: stored.files,
            mutable: stored.mutable,
            time,
            file: stored.file.clone(),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_blob_stays_referenced_until_last_user_goes() {
        let mut index = BlobIndex::default();
        index.add("a", "d1");
        index.add("b", "d1");
        index.add("a", "d2");
        index.remove_experiment("a");
        assert!(index.is_referenced("d1"));
        assert!(!index.is_referenced("d2"));
        index.remove_experiment("b");
        assert!(!index.is_referenced("d1"));
        assert!(index.digests_of("a").is_empty());
    }
}
