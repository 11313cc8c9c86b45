//! The aggregation peer list published for the next window.

use serde::{Deserialize, Serialize};

use crate::error::GauntletError;

/// Schema version written into every [`PeerList`].
pub const PEER_LIST_SCHEMA_VERSION: u32 = 1;

/// Which peers' gradients the next window aggregates.
///
/// JSON form (schema 1):
/// `{"schema_version":1,"window":N,"peers":[uid,...],"reserves":[uid,...]}`.
/// `peers` are ordered best first; aggregators take `peers` and replace a
/// peer whose gradient is unavailable or invalid with the first unused
/// reserve, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerList {
    /// Schema of this document.
    pub schema_version: u32,
    /// The window whose gradients this list selects.
    pub window: u64,
    /// Aggregation peers, best first.
    pub peers: Vec<u16>,
    /// Reserve peers, best first.
    pub reserves: Vec<u16>,
}

impl PeerList {
    /// Serialises to JSON.
    pub fn to_json(&self) -> Result<String, GauntletError> {
        Ok(serde_json::to_string(self)?)
    }

    /// Parses JSON, rejecting unknown schema versions.
    pub fn from_json(json: &str) -> Result<Self, GauntletError> {
        #[derive(Deserialize)]
        struct Versioned {
            schema_version: u32,
        }
        let version: Versioned = serde_json::from_str(json)?;
        if version.schema_version != PEER_LIST_SCHEMA_VERSION {
            return Err(GauntletError::UnsupportedSchema {
                document: "peer list",
                found: version.schema_version,
                expected: PEER_LIST_SCHEMA_VERSION,
            });
        }
        Ok(serde_json::from_str(json)?)
    }

    /// Peers then reserves, in priority order.
    pub fn all(&self) -> impl Iterator<Item = u16> + '_ {
        self.peers.iter().chain(&self.reserves).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_shape() {
        let list = PeerList {
            schema_version: PEER_LIST_SCHEMA_VERSION,
            window: 12,
            peers: vec![4, 1],
            reserves: vec![9],
        };
        let json = list.to_json().unwrap();
        assert_eq!(
            json,
            r#"{"schema_version":1,"window":12,"peers":[4,1],"reserves":[9]}"#
        );
        assert_eq!(PeerList::from_json(&json).unwrap(), list);
        assert_eq!(list.all().collect::<Vec<_>>(), vec![4, 1, 9]);
    }

    #[test]
    fn unknown_schema_is_rejected() {
        let err = PeerList::from_json(
            r#"{"schema_version":2,"window":1,"peers":[],"reserves":[],"x":1}"#,
        )
        .unwrap_err();
        assert!(
            matches!(err, GauntletError::UnsupportedSchema { found: 2, .. }),
            "{err}"
        );
        assert!(PeerList::from_json("not json").is_err());
    }
}
