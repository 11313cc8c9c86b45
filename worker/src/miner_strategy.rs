//! The one seam where a miner's behaviour can differ: what it uploads for a window and
//! when. Production miners run [`Honest`]; the devnet's adversaries (crate module
//! `adversaries`) implement the same trait, so every other step of the window (sync
//! sample, deadline, the lead's list, gather, outer step, checkpoint) is the production
//! loop's own.

use std::future::Future;
use std::pin::Pin;

use worker_model::Samples;
use worker_storage::UploadWindow;

use crate::error::Result;
use crate::miner::{Miner, MinerUpload};
use crate::network::{NodeContext, Resolver};

/// What a strategy sees of the window it produces for.
pub struct WindowInput<'a> {
    pub ctx: &'a NodeContext,
    pub resolve: &'a Resolver,
    pub window: u64,
    pub dataset: &'a dyn Samples,
    pub upload_window: UploadWindow,
}

/// When the loop uploads what a strategy produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadTiming {
    /// Before the window's upload deadline (everyone honest).
    BeforeDeadline,
    /// Only once the deadline has passed (a late uploader).
    AfterDeadline,
}

/// A produced upload and when to send it.
#[derive(Debug)]
pub struct Planned {
    pub upload: MinerUpload,
    pub timing: UploadTiming,
}

/// A boxed future borrowing the miner and the window's input.
pub type PlannedFuture<'a> = Pin<Box<dyn Future<Output = Result<Planned>> + 'a>>;

/// How a miner produces its upload for one window.
pub trait MinerStrategy {
    /// Name in logs and reports.
    fn name(&self) -> &'static str;
    /// This window's upload.
    fn produce<'a>(&'a mut self, miner: &'a mut Miner, input: WindowInput<'a>)
    -> PlannedFuture<'a>;
}

/// Trains on the assigned samples and uploads before the deadline.
#[derive(Debug, Clone, Copy, Default)]
pub struct Honest;

impl MinerStrategy for Honest {
    fn name(&self) -> &'static str {
        "honest"
    }

    fn produce<'a>(
        &'a mut self,
        miner: &'a mut Miner,
        input: WindowInput<'a>,
    ) -> PlannedFuture<'a> {
        Box::pin(async move {
            Ok(Planned {
                upload: miner.produce(input.window, input.dataset, &input.ctx.hotkey)?,
                timing: UploadTiming::BeforeDeadline,
            })
        })
    }
}
