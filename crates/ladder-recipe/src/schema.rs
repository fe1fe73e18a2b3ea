//! The recipe file as written: TOML parsed with serde into `deny_unknown_fields` structs, plus a
//! key locator so that checks made after parsing still point at a line and column.
//!
//! A stage's training keys are flattened into [`Stage::options`] (serde's `deny_unknown_fields`
//! does not combine with `flatten`); [`crate::validate`] checks them against the keys its kind
//! accepts, the same set `ladder sft --config` / `ladder dpo --config` accept.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use ladder_train::options::line_col;

use crate::error::{RecipeError, Result};

/// A whole recipe file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Names the run folder `<output>/<name>/`.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Seed every stage inherits unless it sets its own.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Run the whole recipe once per seed, seed N into `<output>/<name>/seed-N/` (see
    /// [`crate::seeds`]); `ladder compare` then reports the spread over seeds.
    #[serde(default)]
    pub seeds: Option<Vec<u64>>,
    /// Output root; relative paths are relative to the current directory.
    #[serde(default = "default_output")]
    pub output: PathBuf,
    /// Starting checkpoints: every stage chain runs once per start.
    pub start: Vec<Start>,
    /// Stage keys every stage inherits (a key applies to the kinds that accept it).
    #[serde(default)]
    pub defaults: toml::Table,
    pub stage: Vec<Stage>,
    #[serde(default)]
    pub slurm: Option<SlurmConfig>,
}

fn default_seed() -> u64 {
    42
}

fn default_output() -> PathBuf {
    PathBuf::from("runs")
}

/// A starting checkpoint.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Start {
    pub name: String,
    /// A model folder or `hf://ORG/NAME[@REVISION]`.
    pub model: String,
    /// The ladder level the start already stands on (1 = generalist).
    #[serde(default)]
    pub level: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StageKind {
    Sft,
    Dpo,
    Pairs,
    Eval,
    Merge,
}

impl Stage {
    /// How many processes run the stage: `processes`, else `nodes` × `tasks_per_node`.
    pub fn ranks(&self) -> u32 {
        self.launch().ranks()
    }

    pub fn launch(&self) -> Launch {
        Launch { processes: self.processes, nodes: self.nodes, tasks_per_node: self.tasks_per_node, gpus_per_node: self.gpus_per_node }
    }
}

/// How a stage's processes are launched: `mpirun -np processes` by the local executor, or a
/// Slurm job of `nodes` × `tasks_per_node` ranks with `srun --mpi=pmix`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Launch {
    pub processes: Option<u32>,
    pub nodes: Option<u32>,
    pub tasks_per_node: Option<u32>,
    pub gpus_per_node: Option<u32>,
}

impl Launch {
    pub fn ranks(&self) -> u32 {
        self.processes.unwrap_or(self.nodes.unwrap_or(1) * self.tasks_per_node.unwrap_or(1))
    }
}

impl StageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Sft => "sft",
            StageKind::Dpo => "dpo",
            StageKind::Pairs => "pairs",
            StageKind::Eval => "eval",
            StageKind::Merge => "merge",
        }
    }
}

/// One `[[stage]]` table.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Stage {
    pub name: String,
    pub kind: StageKind,
    /// The stage whose model this one starts from, or `"start"` for each starting checkpoint.
    pub from: String,
    /// The ladder level this stage's model stands on.
    #[serde(default)]
    pub level: Option<u32>,
    /// DPO only: a `pairs` stage's name, or a preference file.
    #[serde(default)]
    pub pairs: Option<String>,
    /// Local executor: run this stage data-parallel on this many processes, through `mpirun`.
    #[serde(default)]
    pub processes: Option<u32>,
    /// Slurm executor: nodes of this stage's job, each running `tasks_per_node` ranks with
    /// `gpus_per_node` GPUs, launched with `srun --mpi=pmix`.
    #[serde(default)]
    pub nodes: Option<u32>,
    #[serde(default)]
    pub tasks_per_node: Option<u32>,
    #[serde(default)]
    pub gpus_per_node: Option<u32>,
    /// The kind's own keys: the options of the command of that kind (`ladder sft`, `dpo`,
    /// `pairs`, `eval`), checked by [`crate::plan`].
    #[serde(flatten)]
    pub options: toml::Table,
}

/// `[slurm]`: resources of every stage's job.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    pub partition: Option<String>,
    pub gpus: Option<u32>,
    pub cpus: Option<u32>,
    pub mem: Option<String>,
    pub time: Option<String>,
    /// Extra lines written verbatim after the `#SBATCH` lines (e.g. "#SBATCH --account=x",
    /// "module load cuda").
    #[serde(default)]
    pub extra: Vec<String>,
}

/// A parsed recipe with its file and text (for locating keys).
#[derive(Clone, Debug)]
pub struct RecipeSource {
    pub file: PathBuf,
    pub text: String,
    pub recipe: Recipe,
    pub locator: Locator,
}

/// Reads and parses a recipe file; schema errors carry the line and column and, for an
/// unknown key, the closest valid one.
pub fn load(file: &Path) -> Result<RecipeSource> {
    let text = std::fs::read_to_string(file).map_err(crate::error::io(file))?;
    parse(file, &text)
}

pub fn parse(file: &Path, text: &str) -> Result<RecipeSource> {
    let recipe: Recipe = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        RecipeError::Parse { file: file.to_path_buf(), line, column, message: with_suggestion(e.message().trim()) }
    })?;
    Ok(RecipeSource { file: file.to_path_buf(), text: text.to_string(), locator: Locator::new(text), recipe })
}

/// serde's "unknown field `x`, expected one of `a`, `b`" gets "(did you mean `a`?)".
fn with_suggestion(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else { return message.to_string() };
    let Some((key, expected)) = rest.split_once('`') else { return message.to_string() };
    let candidates: Vec<String> = expected.split('`').skip(1).step_by(2).map(str::to_string).collect();
    let no_other_kinds: &[(&str, Vec<String>)] = &[];
    format!("{}; {}", ladder_train::options::unknown_key(key, &candidates, no_other_kinds), expected.trim_start_matches(", "))
}

/// Where each key of each table sits in the text: `(table, index)` is `("", 0)` for the top
/// level, `("stage", 2)` for the third `[[stage]]`, `("defaults", 0)` for `[defaults]`.
#[derive(Clone, Debug, Default)]
pub struct Locator {
    keys: Vec<(String, usize, String, usize, usize)>,
    tables: Vec<(String, usize, usize)>,
}

impl Locator {
    pub fn new(text: &str) -> Locator {
        let mut loc = Locator::default();
        let mut counts: std::collections::HashMap<String, usize> = Default::default();
        let (mut table, mut index) = (String::new(), 0);
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_start();
            let indent = raw.len() - line.len();
            if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split_once("]]")).map(|(n, _)| n.trim()) {
                let n = counts.entry(name.to_string()).or_insert(0);
                (table, index) = (name.to_string(), *n);
                *n += 1;
                loc.tables.push((table.clone(), index, i + 1));
            } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.split_once(']')).map(|(n, _)| n.trim()) {
                (table, index) = (name.to_string(), 0);
                loc.tables.push((table.clone(), index, i + 1));
            } else if let Some((key, _)) = line.split_once('=') {
                let key = key.trim().trim_matches('"');
                if !key.is_empty() && !key.starts_with('#') {
                    loc.keys.push((table.clone(), index, key.to_string(), i + 1, indent + 1));
                }
            }
        }
        loc
    }

    /// Line and column of `key` in table `(table, index)`, else of the table's header.
    pub fn key(&self, table: &str, index: usize, key: &str) -> (usize, usize) {
        self.keys
            .iter()
            .find(|(t, i, k, _, _)| t == table && *i == index && k == key)
            .map(|(_, _, _, l, c)| (*l, *c))
            .unwrap_or_else(|| self.table(table, index))
    }

    /// Line of a table's header (column 1); line 1 for the top level.
    pub fn table(&self, table: &str, index: usize) -> (usize, usize) {
        self.tables.iter().find(|(t, i, _)| t == table && *i == index).map(|(_, _, l)| (*l, 1)).unwrap_or((1, 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "name = \"r\"\n[[start]]\nname = \"a\"\nmodel = \"m\"\n\n[[stage]]\nname = \"sft\"\nkind = \"sft\"\nfrom = \"start\"\n  lr = 1e-3\n";

    #[test]
    fn parses_and_locates_keys() {
        let src = parse(Path::new("r.toml"), MINIMAL).unwrap();
        assert_eq!(src.recipe.stage[0].kind, StageKind::Sft);
        assert_eq!(src.recipe.stage[0].options["lr"].as_float(), Some(1e-3));
        assert_eq!(src.locator.key("stage", 0, "lr"), (10, 3));
        assert_eq!(src.locator.key("start", 0, "model"), (4, 1));
        assert_eq!(src.locator.table("stage", 0), (6, 1));
    }

    #[test]
    fn unknown_top_level_key_names_line_column_and_suggestion() {
        let text = MINIMAL.replace("[[stage]]", "[[stages]]");
        let err = parse(Path::new("r.toml"), &text).unwrap_err().to_string();
        assert!(err.starts_with("r.toml:6:"), "{err}");
        assert!(err.contains("unknown key `stages` (did you mean `stage`?)"), "{err}");
    }

    #[test]
    fn wrong_type_is_located() {
        let text = MINIMAL.replace("name = \"a\"", "name = 3");
        let err = parse(Path::new("r.toml"), &text).unwrap_err().to_string();
        assert!(err.starts_with("r.toml:3:") && err.contains("invalid type"), "{err}");
    }
}
