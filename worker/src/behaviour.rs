//! How a (devnet) miner behaves: honestly, or as one of the cheaters Gauntlet must catch.

use std::fmt;
use std::str::FromStr;

/// A miner's strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Trains on its assigned data and uploads the compressed pseudo-gradient.
    Honest,
    /// Uploads a zero update without training.
    Lazy,
    /// Re-uploads another peer's gradient under its own uid.
    Copycat,
    /// Uploads its real update scaled by a huge factor.
    Poisoner,
    /// Trains on data other than its assignment (but claims the assigned digest).
    WrongData,
    /// Trains honestly but uploads after the window's deadline.
    Late,
    /// Trains honestly and uploads the update with its sign flipped (same norm, so nothing
    /// about its size gives it away).
    SignFlip,
    /// Trains once, then re-uploads that first object re-sealed for every later window.
    Stale,
    /// A member of a Sybil group: several uids upload one trained update (the first member
    /// trains, the others re-compress it with a tiny scale perturbation, so no two objects
    /// are byte-exact).
    Sybil,
    /// Does not train: uploads a scaled copy of last window's aggregate (the change of the
    /// global model), claiming its assignment.
    FreeRider,
    /// Uploads an honest object, waits until the lead validator has evaluated and listed
    /// it, then overwrites it with a poisoned body.
    Swap,
    /// Decodes another peer's object and feeds it through its own error feedback and
    /// compression before uploading it (a copy that is not byte-exact).
    Recompress,
    /// Trains honestly, but in every other window uploads its update x 1e4, betting that
    /// the validator does not evaluate it then (behaves while it expects to be checked).
    Sleeper,
}

impl Behaviour {
    /// Every behaviour, for help texts.
    pub const ALL: [Behaviour; 13] = [
        Behaviour::Honest,
        Behaviour::Lazy,
        Behaviour::Copycat,
        Behaviour::Poisoner,
        Behaviour::WrongData,
        Behaviour::Late,
        Behaviour::SignFlip,
        Behaviour::Stale,
        Behaviour::Sybil,
        Behaviour::FreeRider,
        Behaviour::Swap,
        Behaviour::Recompress,
        Behaviour::Sleeper,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Behaviour::Honest => "honest",
            Behaviour::Lazy => "lazy",
            Behaviour::Copycat => "copycat",
            Behaviour::Poisoner => "poisoner",
            Behaviour::WrongData => "wrongdata",
            Behaviour::Late => "late",
            Behaviour::SignFlip => "signflip",
            Behaviour::Stale => "stale",
            Behaviour::Sybil => "sybil",
            Behaviour::FreeRider => "freerider",
            Behaviour::Swap => "swap",
            Behaviour::Recompress => "recompress",
            Behaviour::Sleeper => "sleeper",
        }
    }

    /// Whether this miner runs the inner optimizer at all.
    pub fn trains(self) -> bool {
        !matches!(
            self,
            Behaviour::Lazy | Behaviour::Copycat | Behaviour::FreeRider | Behaviour::Recompress
        )
    }
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Behaviour {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Behaviour::ALL
            .into_iter()
            .find(|b| b.name() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                let names: Vec<_> = Behaviour::ALL.iter().map(|b| b.name()).collect();
                format!(
                    "unknown behaviour {s:?} (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for b in Behaviour::ALL {
            assert_eq!(b.name().parse::<Behaviour>(), Ok(b));
        }
        assert_eq!("LAZY".parse::<Behaviour>(), Ok(Behaviour::Lazy));
        assert!(
            "sneaky"
                .parse::<Behaviour>()
                .unwrap_err()
                .contains("copycat")
        );
    }
}
