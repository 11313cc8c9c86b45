//! Conversions between generated subxt types / errors and this crate's types.

use subxt::error::{
    BackendError, DispatchError, ExtrinsicError, RpcError, TransactionEventsError,
    TransactionFinalizedSuccessError, TransactionProgressError, TransactionStatusError,
};
use subxt::ext::scale_decode::DecodeAsType;
use subxt::utils::AccountId32;

use super::api::runtime::runtime_types::pallet_subtensor::rpc_info::neuron_info::NeuronInfoLite as GenericNeuronInfoLite;
use crate::account::AccountId;
use crate::error::ChainError;
use crate::types::{Metagraph, Neuron};

/// `NeuronInfoLite` as subtensor instantiates it.
pub(crate) type NeuronInfoLite = GenericNeuronInfoLite<AccountId32>;

/// Convert one `NeuronInfoLite` from the runtime API.
pub(crate) fn neuron_from_lite(lite: &NeuronInfoLite) -> Neuron {
    let stake = lite
        .stake
        .iter()
        .fold(0u64, |sum, (_, amount)| sum.saturating_add(amount.0));
    Neuron {
        uid: lite.uid,
        hotkey: AccountId(lite.hotkey.0),
        coldkey: AccountId(lite.coldkey.0),
        stake,
        incentive: f64::from(lite.incentive) / f64::from(u16::MAX),
        validator_permit: lite.validator_permit,
        last_update: lite.last_update,
        active: lite.active,
    }
}

/// Build a metagraph from runtime API output, sorted by uid.
pub(crate) fn metagraph_from_lite(netuid: u16, block: u64, lite: &[NeuronInfoLite]) -> Metagraph {
    let mut neurons: Vec<Neuron> = lite.iter().map(neuron_from_lite).collect();
    neurons.sort_by_key(|n| n.uid);
    Metagraph {
        netuid,
        block,
        neurons,
    }
}

/// Decode the SCALE output of `NeuronInfoRuntimeApi_get_neurons_lite` against `metadata`
/// (the node's) into a metagraph — what [`crate::SubxtChain::metagraph`] does after the call.
pub fn decode_neurons_lite(
    netuid: u16,
    block: u64,
    bytes: &[u8],
    metadata: &subxt::Metadata,
) -> Result<Metagraph, ChainError> {
    let method = metadata
        .runtime_api_trait_by_name("NeuronInfoRuntimeApi")
        .and_then(|api| api.method_by_name("get_neurons_lite"))
        .ok_or_else(|| {
            ChainError::Decode("metadata lacks NeuronInfoRuntimeApi.get_neurons_lite".into())
        })?;
    let cursor = &mut &bytes[..];
    let lite = Vec::<NeuronInfoLite>::decode_as_type(cursor, method.output_ty(), metadata.types())
        .map_err(|e| ChainError::Decode(e.to_string()))?;
    if !cursor.is_empty() {
        return Err(ChainError::Decode(format!(
            "{} trailing bytes after neurons",
            cursor.len()
        )));
    }
    Ok(metagraph_from_lite(netuid, block, &lite))
}

/// Map a runtime dispatch error to a named error.
pub(crate) fn dispatch_error(error: &DispatchError) -> ChainError {
    match error {
        DispatchError::Module(module) => match module.details() {
            Ok(details) => ChainError::module(details.pallet.name(), &details.variant.name),
            Err(_) => ChainError::Dispatch(module.to_string()),
        },
        other => ChainError::Dispatch(other.to_string()),
    }
}

/// Names of subtensor's `CustomTransactionError` codes (stable 0..=13), which the node reports
/// as `Custom error: N` when it refuses a transaction during pool validation.
fn custom_validity_name(code: u8) -> Option<&'static str> {
    Some(match code {
        0 => "ColdkeyInSwapSchedule",
        1 => "StakeAmountTooLow",
        2 => "BalanceTooLow",
        3 => "SubnetNotExists",
        4 => "HotkeyAccountDoesntExist",
        5 => "NotEnoughStakeToWithdraw",
        6 => "RateLimitExceeded",
        7 => "InsufficientLiquidity",
        8 => "SlippageTooHigh",
        9 => "TransferDisallowed",
        10 => "HotKeyNotRegisteredInNetwork",
        11 => "InvalidIpAddress",
        12 => "ServingRateLimitExceeded",
        13 => "InvalidPort",
        _ => return None,
    })
}

/// Make a node's pool-validation message readable, naming subtensor custom codes.
pub(crate) fn invalid_transaction(message: &str) -> ChainError {
    let code = message.split("Custom error: ").nth(1).and_then(|rest| {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u8>().ok()
    });
    match code.and_then(custom_validity_name) {
        Some(name) => ChainError::InvalidTransaction(format!("{name} ({message})")),
        None => ChainError::InvalidTransaction(message.to_owned()),
    }
}

/// Map errors from building/submitting a transaction. A node refusing the transaction
/// answers a JSON-RPC error whose `data` carries the reason (`Transaction has a bad
/// signature`, `Custom error: 6`, ...); it is kept in the message.
pub(crate) fn submit_error(error: ExtrinsicError) -> ChainError {
    if let ExtrinsicError::ErrorSubmittingTransaction(BackendError::Rpc(RpcError::ClientError(
        subxt::rpcs::Error::User(user),
    ))) = &error
    {
        let data = user
            .data
            .as_ref()
            .map(|d| d.get().trim_matches('"').to_owned());
        let text = match data {
            Some(reason) => format!("{}: {reason} ({})", user.message, user.code),
            None => format!("{} ({})", user.message, user.code),
        };
        // Transaction pool errors use codes 1010..=1019.
        return if (1010..=1019).contains(&user.code) {
            invalid_transaction(&text)
        } else {
            ChainError::Rpc(text)
        };
    }
    let text = error.to_string();
    if text.contains("Invalid Transaction") || text.contains("1010") {
        return invalid_transaction(&text);
    }
    ChainError::Rpc(text)
}

/// Map errors from waiting for finalization and success.
pub(crate) fn finalized_error(error: TransactionFinalizedSuccessError) -> ChainError {
    match error {
        TransactionFinalizedSuccessError::SuccessError(
            TransactionEventsError::ExtrinsicFailed(dispatch),
        ) => dispatch_error(&dispatch),
        TransactionFinalizedSuccessError::FinalizationError(
            TransactionProgressError::TransactionStatusError(TransactionStatusError::Invalid(
                message,
            )),
        ) => invalid_transaction(&message),
        other => ChainError::Rpc(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_validity_codes_are_named() {
        let e = invalid_transaction("Invalid Transaction: Custom error: 6");
        assert_eq!(
            e,
            ChainError::InvalidTransaction(
                "RateLimitExceeded (Invalid Transaction: Custom error: 6)".into()
            )
        );
        assert!(e.is_rate_limit());
        assert_eq!(
            invalid_transaction("Transaction is outdated"),
            ChainError::InvalidTransaction("Transaction is outdated".into())
        );
        assert_eq!(
            invalid_transaction("Custom error: 200"),
            ChainError::InvalidTransaction("Custom error: 200".into())
        );
    }
}
