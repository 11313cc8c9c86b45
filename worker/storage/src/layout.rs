//! Object keys of a training run (see README.md for the full layout).
//!
//! ```text
//! {run}/gradients/{window:010}/{uid:05}.slc      compressed pseudo-gradient of a miner
//! {run}/sync/{window:010}/{uid:05}.bin           parameter sample for the sync check (debug)
//! {run}/peers/{window:010}/{uid:05}.json         aggregation peer list of validator `uid`
//! {run}/aggregates/{window:010}/aggregate.slc    validator's aggregated update
//! {run}/checkpoints/{window:010}/{file}          checkpoint files
//! {run}/checkpoints/latest.json                  the newest published checkpoint
//! ```
//!
//! Windows are zero-padded so that keys sort by window and a window is a listable prefix.

use crate::error::StorageError;
use crate::key::validate_key;

/// The kinds of per-window objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// A miner's compressed pseudo-gradient.
    Gradient,
    /// A miner's parameter sample published after its outer step (sync check).
    SyncSample,
    /// The validator's aggregation peer list.
    PeerList,
    /// The validator's aggregated update.
    Aggregate,
    /// Checkpoint files.
    Checkpoint,
}

impl ObjectKind {
    /// All kinds, in layout order.
    pub const ALL: [ObjectKind; 5] = [
        ObjectKind::Gradient,
        ObjectKind::SyncSample,
        ObjectKind::PeerList,
        ObjectKind::Aggregate,
        ObjectKind::Checkpoint,
    ];

    /// The key segment after the run id.
    pub fn segment(self) -> &'static str {
        match self {
            ObjectKind::Gradient => "gradients",
            ObjectKind::SyncSample => "sync",
            ObjectKind::PeerList => "peers",
            ObjectKind::Aggregate => "aggregates",
            ObjectKind::Checkpoint => "checkpoints",
        }
    }

    fn from_segment(segment: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.segment() == segment)
    }
}

/// What a layout key refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey {
    /// The object kind.
    pub kind: ObjectKind,
    /// The window the object belongs to.
    pub window: u64,
    /// The file name within the window directory (`00007.slc`, `peers.json`, ...).
    pub name: String,
    /// The miner uid for gradients and sync samples, the validator uid for peer lists.
    pub uid: Option<u16>,
}

/// Key builder for one training run; every key starts with the run id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLayout {
    run: String,
}

impl RunLayout {
    /// A layout for run `run` (see [`run_manifest::check_run_id`]).
    pub fn new(run: impl Into<String>) -> Result<Self, StorageError> {
        let run = run.into();
        // The run id rule belongs to the run manifest; a valid id is always a valid key.
        if let Err(reason) = run_manifest::check_run_id(&run) {
            return Err(StorageError::InvalidKey { key: run, reason });
        }
        validate_key(&run)?;
        Ok(Self { run })
    }

    /// The run id.
    pub fn run(&self) -> &str {
        &self.run
    }

    /// `{run}/gradients/{window:010}/{uid:05}.slc`
    pub fn gradient(&self, window: u64, uid: u16) -> String {
        format!(
            "{}{uid:05}.slc",
            self.window_prefix(ObjectKind::Gradient, window)
        )
    }

    /// `{run}/sync/{window:010}/{uid:05}.bin`
    pub fn sync_sample(&self, window: u64, uid: u16) -> String {
        format!(
            "{}{uid:05}.bin",
            self.window_prefix(ObjectKind::SyncSample, window)
        )
    }

    /// `{run}/peers/{window:010}/{validator:05}.json`: one list per validator, so validators
    /// sharing a bucket never overwrite each other's.
    pub fn peer_list(&self, window: u64, validator: u16) -> String {
        format!(
            "{}{validator:05}.json",
            self.window_prefix(ObjectKind::PeerList, window)
        )
    }

    /// `{run}/checkpoints/latest.json`: which published checkpoint is the newest.
    pub fn latest_checkpoint(&self) -> String {
        format!("{}latest.json", self.kind_prefix(ObjectKind::Checkpoint))
    }

    /// `{run}/aggregates/{window:010}/aggregate.slc`
    pub fn aggregate(&self, window: u64) -> String {
        format!(
            "{}aggregate.slc",
            self.window_prefix(ObjectKind::Aggregate, window)
        )
    }

    /// `{run}/checkpoints/{window:010}/{file}`; `file` is one key segment.
    pub fn checkpoint(&self, window: u64, file: &str) -> Result<String, StorageError> {
        let key = format!(
            "{}{file}",
            self.window_prefix(ObjectKind::Checkpoint, window)
        );
        if file.contains('/') {
            return Err(StorageError::InvalidKey {
                key,
                reason: "checkpoint file name must be a single segment",
            });
        }
        validate_key(&key)?;
        Ok(key)
    }

    /// `{run}/{kind}/`: lists every window of a kind.
    pub fn kind_prefix(&self, kind: ObjectKind) -> String {
        format!("{}/{}/", self.run, kind.segment())
    }

    /// `{run}/{kind}/{window:010}/`: lists one window of a kind.
    pub fn window_prefix(&self, kind: ObjectKind, window: u64) -> String {
        format!("{}{window:010}/", self.kind_prefix(kind))
    }

    /// Parses a key of this run back into kind, window and uid; `None` for foreign keys.
    pub fn parse(&self, key: &str) -> Option<ParsedKey> {
        let mut segments = key.split('/');
        if segments.next()? != self.run {
            return None;
        }
        let kind = ObjectKind::from_segment(segments.next()?)?;
        let window_segment = segments.next()?;
        if window_segment.len() < 10 || !window_segment.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let window = window_segment.parse().ok()?;
        let name = segments.next()?;
        if segments.next().is_some() {
            return None;
        }
        let uid = match kind {
            ObjectKind::Gradient => Some(parse_uid(name, ".slc")?),
            ObjectKind::SyncSample => Some(parse_uid(name, ".bin")?),
            ObjectKind::PeerList => Some(parse_uid(name, ".json")?),
            _ => None,
        };
        Some(ParsedKey {
            kind,
            window,
            name: name.to_owned(),
            uid,
        })
    }
}

fn parse_uid(name: &str, suffix: &str) -> Option<u16> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        let layout = RunLayout::new("run-7").unwrap();
        assert_eq!(
            layout.gradient(42, 3),
            "run-7/gradients/0000000042/00003.slc"
        );
        assert_eq!(
            layout.sync_sample(42, 65535),
            "run-7/sync/0000000042/65535.bin"
        );
        assert_eq!(layout.peer_list(1, 4), "run-7/peers/0000000001/00004.json");
        assert_eq!(layout.latest_checkpoint(), "run-7/checkpoints/latest.json");
        assert_eq!(layout.parse(&layout.latest_checkpoint()), None);
        assert_eq!(
            layout.aggregate(1),
            "run-7/aggregates/0000000001/aggregate.slc"
        );
        assert_eq!(
            layout.checkpoint(9, "model.safetensors").unwrap(),
            "run-7/checkpoints/0000000009/model.safetensors"
        );
        assert!(layout.checkpoint(9, "../x").is_err());
        assert!(layout.checkpoint(9, "a/b").is_err());
        for key in [
            layout.gradient(u64::MAX, u16::MAX),
            layout.peer_list(0, 0),
            layout.aggregate(5),
        ] {
            assert!(validate_key(&key).is_ok(), "{key}");
        }
    }

    #[test]
    fn windows_sort_lexicographically() {
        let layout = RunLayout::new("r").unwrap();
        assert!(layout.gradient(9, 0) < layout.gradient(10, 0));
        assert!(layout.gradient(99_999, 1) < layout.gradient(100_000, 0));
    }

    #[test]
    fn parse_round_trips() {
        let layout = RunLayout::new("r").unwrap();
        let parsed = layout.parse(&layout.gradient(12, 34)).unwrap();
        assert_eq!(
            parsed,
            ParsedKey {
                kind: ObjectKind::Gradient,
                window: 12,
                name: "00034.slc".into(),
                uid: Some(34),
            }
        );
        let parsed = layout.parse(&layout.peer_list(7, 2)).unwrap();
        assert_eq!(
            (parsed.kind, parsed.window, parsed.uid),
            (ObjectKind::PeerList, 7, Some(2))
        );
        assert_eq!(
            layout.parse(&layout.gradient(u64::MAX, 1)).unwrap().window,
            u64::MAX
        );
    }

    #[test]
    fn parse_rejects_foreign_keys() {
        let layout = RunLayout::new("r").unwrap();
        for key in [
            "other/gradients/0000000001/00001.slc",
            "r/unknown/0000000001/x",
            "r/gradients/1/00001.slc",
            "r/gradients/0000000001/1.slc",
            "r/gradients/0000000001/00001.bin",
            "r/gradients/0000000001/a/00001.slc",
            "r/gradients/0000000001",
        ] {
            assert_eq!(layout.parse(key), None, "{key}");
        }
    }

    #[test]
    fn run_ids_are_single_safe_segments() {
        assert!(RunLayout::new("a/b").is_err());
        assert!(RunLayout::new("..").is_err());
        assert!(RunLayout::new("").is_err());
        assert!(RunLayout::new("templar-v2.1_test").is_ok());
    }
}
