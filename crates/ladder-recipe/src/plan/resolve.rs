//! Each stage's job, resolved by the same functions the commands use
//! ([`ladder_train::options`]): the recipe fills in what it owns (the model from `from`, the
//! output folder, a DPO stage's pairs file) and reports an [`OptionError`] at its key's line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ladder_model::LoraSettings;
use ladder_train::options::{self, DpoArgs, EvalArgs, MergeArgs, OptionError, PairsArgs, SftArgs};
use ladder_train::Method;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::checks::Checker;
use super::Work;
use crate::schema::{Stage, StageKind};

/// What a stage's output is, for the stages that build on it.
#[derive(Clone, Debug)]
pub(super) enum Produces {
    Adapter { base: String, adapter: PathBuf, lora: LoraSettings },
    Full { model: String },
    Pairs { file: PathBuf },
    Nothing,
}

/// Where a stage stands: what its parent produced and where things go.
pub(super) struct Context<'a> {
    pub parent: &'a Produces,
    /// The stage's own folder.
    pub dir: &'a Path,
    pub run_dir: &'a Path,
    /// Every stage resolved so far (this start), with its fingerprint.
    pub produced: &'a HashMap<String, (Produces, String)>,
}

/// Resolves stage `i` (its merged keys `t`) against its parent; problems go to `c`.
pub(super) fn resolve(
    c: &mut Checker,
    i: usize,
    st: &Stage,
    t: &toml::Table,
    ctx: &Context,
    inputs: &mut Vec<Value>,
    parents: &mut Vec<String>,
) -> Option<(Work, Produces)> {
    // A key set in the stage is reported there, one inherited from [defaults] there.
    let report = |c: &mut Checker, e: OptionError| {
        let (table, idx) = if st.options.contains_key(&e.key) || !t.contains_key(&e.key) { ("stage", i) } else { ("defaults", 0) };
        let key = if st.options.contains_key(&e.key) || t.contains_key(&e.key) { e.key.as_str() } else { "name" };
        c.at(table, idx, key, format!("stage `{}`: {}", st.name, e.as_keys()));
    };
    let (model, adapter, parent_lora) = match ctx.parent {
        Produces::Adapter { base, adapter, lora } => (base.clone(), Some(adapter.clone()), Some(lora.clone())),
        Produces::Full { model } => (model.clone(), None, None),
        Produces::Pairs { .. } | Produces::Nothing => {
            c.at("stage", i, "from", format!("stage `{}`: from = {:?} is a stage that produces no model (a pairs or eval stage)", st.name, st.from));
            return None;
        }
    };
    let (dir, inherited) = (ctx.dir, parent_lora.as_ref());
    let resolved = match st.kind {
        StageKind::Sft => {
            let mut args: SftArgs = typed(t)?;
            (args.train.model, args.train.adapter, args.train.out) = (Some(model.clone()), adapter.clone(), Some(dir.to_path_buf()));
            options::resolve_sft_args(args, inherited).map(|job| {
                let produces = trained(&model, &job.stage.method, ctx);
                (Work::Sft(job), produces)
            })
        }
        StageKind::Dpo => {
            let mut args: DpoArgs = typed(t)?;
            if let Some(p) = &st.pairs {
                let file = match ctx.produced.get(p) {
                    Some((Produces::Pairs { file }, fp)) => {
                        inputs.push(json!({"stage": p, "fingerprint": fp}));
                        parents.push(p.clone());
                        file.clone()
                    }
                    _ => PathBuf::from(p),
                };
                args.train.data = Some(vec![file]);
            }
            (args.train.model, args.train.adapter, args.train.out) = (Some(model.clone()), adapter.clone(), Some(dir.to_path_buf()));
            if args.reference_cache.is_none() {
                args.reference_cache = Some(ctx.run_dir.join("reference-cache"));
            }
            options::resolve_dpo_args(args, inherited).map(|job| {
                let produces = trained(&model, &job.stage.method, ctx);
                (Work::Dpo(job), produces)
            })
        }
        StageKind::Merge => {
            let Some(adapter) = adapter else {
                c.at("stage", i, "from", format!("stage `{}`: a merge stage folds a LoRA adapter into its base, but from = {:?} produced full weights", st.name, st.from));
                return None;
            };
            let args = MergeArgs { model: Some(model), adapter: Some(adapter), out: Some(dir.to_path_buf()), overwrite: None };
            options::resolve_merge(args).map(|job| (Work::Merge(job), Produces::Full { model: dir.to_string_lossy().into_owned() }))
        }
        StageKind::Pairs => {
            let mut args: PairsArgs = typed(t)?;
            (args.model.model, args.model.adapter, args.out) = (Some(model), adapter, Some(dir.join("pairs.jsonl")));
            options::resolve_pairs(args).map(|job| (Work::Pairs(job), Produces::Pairs { file: dir.join("pairs.jsonl") }))
        }
        StageKind::Eval => {
            let mut args: EvalArgs = typed(t)?;
            // Scoring given predictions runs no model.
            if args.predictions.is_none() {
                (args.model.model, args.model.adapter) = (Some(model), adapter);
            }
            args.out = Some(dir.join("eval.json"));
            options::resolve_eval(args).map(|job| (Work::Eval(job), Produces::Nothing))
        }
    };
    resolved.map_err(|e| report(c, e)).ok()
}

/// The stage's keys as its options struct (their types were checked already).
fn typed<A: DeserializeOwned>(t: &toml::Table) -> Option<A> {
    toml::Value::Table(t.clone()).try_into().ok()
}

/// What a training stage leaves for its children: a continued adapter keeps its base.
fn trained(model: &str, method: &Method, ctx: &Context) -> Produces {
    match method {
        Method::Full => Produces::Full { model: ctx.dir.to_string_lossy().into_owned() },
        Method::Lora(lora) => {
            let base = match ctx.parent {
                Produces::Adapter { base, .. } => base.clone(),
                _ => model.to_string(),
            };
            Produces::Adapter { base, adapter: ctx.dir.to_path_buf(), lora: lora.clone() }
        }
    }
}
