//! What a stage does, resolved: the library job of its kind.

use std::path::PathBuf;

use ladder_train::dpo::DpoJob;
use ladder_train::evaluate::{EvalJob, EvalSource};
use ladder_train::options::MergeJob;
use ladder_train::pairs::PairsJob;
use ladder_train::sft::SftJob;
use serde_json::Value;

use crate::schema::StageKind;

/// A stage's job; its kind follows from it.
#[derive(Clone, Debug)]
pub enum Work {
    Sft(SftJob),
    Dpo(DpoJob),
    Merge(MergeJob),
    Pairs(PairsJob),
    Eval(EvalJob),
}

impl Work {
    pub fn kind(&self) -> StageKind {
        match self {
            Work::Sft(_) => StageKind::Sft,
            Work::Dpo(_) => StageKind::Dpo,
            Work::Merge(_) => StageKind::Merge,
            Work::Pairs(_) => StageKind::Pairs,
            Work::Eval(_) => StageKind::Eval,
        }
    }

    /// The resolved configuration, as written in `manifest.json` and fingerprinted.
    pub fn config(&self) -> Value {
        match self {
            Work::Sft(j) => serde_json::to_value(j),
            Work::Dpo(j) => serde_json::to_value(j),
            Work::Merge(j) => serde_json::to_value(j),
            Work::Pairs(j) => serde_json::to_value(j),
            Work::Eval(j) => serde_json::to_value(j),
        }
        .expect("serialisable")
    }

    /// Files the stage reads (fingerprinted by content unless another stage writes them).
    pub fn data_files(&self) -> Vec<PathBuf> {
        match self {
            Work::Sft(j) => j.stage.data.clone(),
            Work::Dpo(j) => j.stage.data.clone(),
            Work::Merge(_) => vec![],
            Work::Pairs(j) => j.data.clone(),
            Work::Eval(j) => match &j.source {
                EvalSource::Model { data, .. } => data.clone(),
                EvalSource::Predictions { file, .. } => vec![file.clone()],
            },
        }
    }
}
