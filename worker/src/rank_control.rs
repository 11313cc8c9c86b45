//! The control messages rank 0 writes to the other ranks of its replica, one JSON line
//! each on the rank's stdin (`worker_distributed::launch::Ranks::send`). They only say
//! what comes next; the tensors themselves travel over the process group
//! (`worker_distributed::replicate`).

use std::io::BufRead;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use worker_distributed::replicate::BatchShape;
use worker_distributed::{DistributedError, ProcessGroup, Store};

use crate::error::{NodeError, Result};

/// One instruction of rank 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ControlMessage {
    /// First message: what to build before joining the group.
    Start {
        /// Canonical JSON of the run manifest (verified again by the rank, same hash).
        manifest: String,
        /// Expected SHA-256 of `manifest` (hex).
        manifest_sha256: String,
        /// `cpu`, or the CUDA device index of rank 0 (rank r uses index + r).
        device: RankDevice,
        /// Bound of the group's rendezvous and of every collective, in milliseconds.
        timeout_ms: u64,
        /// libtorch intra-op threads of the rank (CPU ranks share the pod's cores).
        threads: Option<i32>,
        /// How the AdamW state is laid out over the ranks.
        sharding: RankSharding,
    },
    /// Train one window: the parameters, then (if `optimizer`) the AdamW state, then the
    /// micro-batches of these shapes arrive by broadcast, and every rank runs the window.
    Window {
        /// Window number (for logs).
        window: u64,
        /// Micro-batch shapes, step by step.
        shapes: Vec<Vec<BatchShape>>,
        /// Whether rank 0's optimizer state is broadcast before the window (replicated:
        /// all of it; ZeRO-1: each rank keeps its range).
        optimizer: bool,
    },
    /// ZeRO-1: every rank sends its optimizer range to rank 0 (which writes a checkpoint).
    GatherOptimizer,
    /// The replica is stopping: exit 0.
    Stop,
}

/// How the inner AdamW state is laid out over the ranks of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum RankSharding {
    /// Every rank holds all of it (8 B per parameter on every rank).
    Replicated,
    /// ZeRO-1: each rank holds the moments of 1 / N of the parameters (8 / N B per
    /// parameter); checkpoints gather them on rank 0.
    #[default]
    Zero1,
}

impl RankSharding {
    /// The trainer's layout.
    pub fn optimizer(self) -> worker_model::OptimizerSharding {
        match self {
            RankSharding::Replicated => worker_model::OptimizerSharding::Replicated,
            RankSharding::Zero1 => worker_model::OptimizerSharding::Zero1,
        }
    }
}

/// Where a rank computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RankDevice {
    /// Every rank on the CPU (Gloo).
    Cpu,
    /// Rank r on CUDA device `first + r` (NCCL).
    Cuda {
        /// Rank 0's device index.
        first: usize,
    },
}

impl RankDevice {
    /// Joins the replica's process group as `rank`: Gloo over loopback on the CPU, NCCL on
    /// CUDA (the same for rank 0 and the spawned ranks).
    pub fn join(
        self,
        store: &Store,
        rank: usize,
        world_size: usize,
        timeout: Duration,
    ) -> std::result::Result<ProcessGroup, DistributedError> {
        match self {
            RankDevice::Cpu => ProcessGroup::gloo(store, rank, world_size, timeout, "127.0.0.1"),
            RankDevice::Cuda { .. } => ProcessGroup::nccl(store, rank, world_size, timeout),
        }
    }

    /// The device of `rank`.
    pub fn for_rank(self, rank: usize) -> tch::Device {
        match self {
            RankDevice::Cpu => tch::Device::Cpu,
            RankDevice::Cuda { first } => tch::Device::Cuda(first + rank),
        }
    }
}

impl ControlMessage {
    /// The message as one line (with its newline).
    pub fn to_line(&self) -> Result<Vec<u8>> {
        let mut line = serde_json::to_vec(self)?;
        line.push(b'\n');
        Ok(line)
    }

    /// The next message on `input`; `None` at end of input (rank 0 is gone).
    pub fn read(input: &mut dyn BufRead) -> Result<Option<ControlMessage>> {
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        serde_json::from_str(line.trim_end())
            .map(Some)
            .map_err(|err| NodeError::Config(format!("unreadable control message: {err}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_survive_a_line_round_trip_and_end_of_input_is_none() {
        let messages = vec![
            ControlMessage::Start {
                manifest: "{\"a\":1}".into(),
                manifest_sha256: "ab".into(),
                device: RankDevice::Cuda { first: 2 },
                timeout_ms: 5000,
                threads: Some(1),
                sharding: RankSharding::Zero1,
            },
            ControlMessage::Window {
                window: 7,
                shapes: vec![vec![[2, 16], [1, 16]]],
                optimizer: true,
            },
            ControlMessage::GatherOptimizer,
            ControlMessage::Stop,
        ];
        let mut bytes = Vec::new();
        for m in &messages {
            bytes.extend(m.to_line().unwrap());
        }
        let mut input = std::io::Cursor::new(bytes);
        for m in &messages {
            assert_eq!(ControlMessage::read(&mut input).unwrap().as_ref(), Some(m));
        }
        assert_eq!(ControlMessage::read(&mut input).unwrap(), None);
        let mut garbage = std::io::Cursor::new(b"{\"kind\":\"nope\"}\n".to_vec());
        assert!(ControlMessage::read(&mut garbage).is_err());
        assert_eq!(
            RankDevice::Cuda { first: 2 }.for_rank(3),
            tch::Device::Cuda(5)
        );
    }
}
