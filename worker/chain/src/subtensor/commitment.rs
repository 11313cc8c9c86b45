//! Commitment payloads <-> the Commitments pallet's `Data::RawN` variants.

use super::api::runtime::runtime_types::bounded_collections::bounded_vec::BoundedVec;
use super::api::runtime::runtime_types::pallet_commitments::types::{CommitmentInfo, Data};

/// Maps byte strings of each length 0..=128 to and from the matching `RawN` variant.
macro_rules! raw_variants {
    ($($len:literal => $variant:ident),* $(,)?) => {
        /// `Data::Raw{len}` holding `bytes`, or `None` when longer than 128 bytes.
        pub(crate) fn raw_data(bytes: &[u8]) -> Option<Data> {
            match bytes.len() {
                $($len => Some(Data::$variant(bytes.try_into().ok()?)),)*
                _ => None,
            }
        }

        /// The bytes of a `RawN` field; `None` for hashes, timelocked data and `None`.
        pub(crate) fn data_bytes(data: &Data) -> Option<Vec<u8>> {
            match data {
                $(Data::$variant(bytes) => Some(bytes.to_vec()),)*
                _ => None,
            }
        }
    };
}

raw_variants!(
    0 => Raw0, 1 => Raw1, 2 => Raw2, 3 => Raw3, 4 => Raw4, 5 => Raw5, 6 => Raw6, 7 => Raw7,
    8 => Raw8, 9 => Raw9, 10 => Raw10, 11 => Raw11, 12 => Raw12, 13 => Raw13, 14 => Raw14,
    15 => Raw15, 16 => Raw16, 17 => Raw17, 18 => Raw18, 19 => Raw19, 20 => Raw20, 21 => Raw21,
    22 => Raw22, 23 => Raw23, 24 => Raw24, 25 => Raw25, 26 => Raw26, 27 => Raw27, 28 => Raw28,
    29 => Raw29, 30 => Raw30, 31 => Raw31, 32 => Raw32, 33 => Raw33, 34 => Raw34, 35 => Raw35,
    36 => Raw36, 37 => Raw37, 38 => Raw38, 39 => Raw39, 40 => Raw40, 41 => Raw41, 42 => Raw42,
    43 => Raw43, 44 => Raw44, 45 => Raw45, 46 => Raw46, 47 => Raw47, 48 => Raw48, 49 => Raw49,
    50 => Raw50, 51 => Raw51, 52 => Raw52, 53 => Raw53, 54 => Raw54, 55 => Raw55, 56 => Raw56,
    57 => Raw57, 58 => Raw58, 59 => Raw59, 60 => Raw60, 61 => Raw61, 62 => Raw62, 63 => Raw63,
    64 => Raw64, 65 => Raw65, 66 => Raw66, 67 => Raw67, 68 => Raw68, 69 => Raw69, 70 => Raw70,
    71 => Raw71, 72 => Raw72, 73 => Raw73, 74 => Raw74, 75 => Raw75, 76 => Raw76, 77 => Raw77,
    78 => Raw78, 79 => Raw79, 80 => Raw80, 81 => Raw81, 82 => Raw82, 83 => Raw83, 84 => Raw84,
    85 => Raw85, 86 => Raw86, 87 => Raw87, 88 => Raw88, 89 => Raw89, 90 => Raw90, 91 => Raw91,
    92 => Raw92, 93 => Raw93, 94 => Raw94, 95 => Raw95, 96 => Raw96, 97 => Raw97, 98 => Raw98,
    99 => Raw99, 100 => Raw100, 101 => Raw101, 102 => Raw102, 103 => Raw103, 104 => Raw104,
    105 => Raw105, 106 => Raw106, 107 => Raw107, 108 => Raw108, 109 => Raw109, 110 => Raw110,
    111 => Raw111, 112 => Raw112, 113 => Raw113, 114 => Raw114, 115 => Raw115, 116 => Raw116,
    117 => Raw117, 118 => Raw118, 119 => Raw119, 120 => Raw120, 121 => Raw121, 122 => Raw122,
    123 => Raw123, 124 => Raw124, 125 => Raw125, 126 => Raw126, 127 => Raw127, 128 => Raw128
);

/// A commitment with one raw field.
pub(crate) fn commitment_info(bytes: &[u8]) -> Option<CommitmentInfo> {
    Some(CommitmentInfo {
        fields: BoundedVec(vec![raw_data(bytes)?]),
    })
}

/// The first raw field of a commitment.
pub(crate) fn first_raw_field(info: &CommitmentInfo) -> Option<Vec<u8>> {
    info.fields.0.iter().find_map(data_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_round_trips_through_its_raw_variant() {
        for len in 0..=128usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let info = commitment_info(&bytes).expect("fits");
            assert_eq!(info.fields.0.len(), 1);
            assert_eq!(first_raw_field(&info), Some(bytes));
        }
        assert!(commitment_info(&[0u8; 129]).is_none());
    }

    #[test]
    fn non_raw_fields_are_skipped() {
        let info = CommitmentInfo {
            fields: BoundedVec(vec![
                Data::None,
                Data::BlakeTwo256([1; 32]),
                Data::Raw2([4, 5]),
            ]),
        };
        assert_eq!(first_raw_field(&info), Some(vec![4, 5]));
    }
}
