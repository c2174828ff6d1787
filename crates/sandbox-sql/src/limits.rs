//! Every limit of a SQL job, as an explicit setting.

use std::time::Duration;

/// Limits applied to each SQL job. Defaults suit interactive analysis on a
/// small server; every one can be changed by the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineLimits {
    /// Longest SQL text accepted, in bytes (default 64 KiB).
    pub max_sql_bytes: usize,
    /// Most lexical tokens in one query (default 8 192).
    pub max_tokens: usize,
    /// Most operators in one query: bounds the depth of flat expressions
    /// like `1+1+…+1`, on which planners recurse (default 512).
    pub max_operators: usize,
    /// Deepest parenthesis / subquery nesting (default 32).
    pub max_nesting: usize,
    /// Stack of the planning thread (default 64 MiB).
    pub planner_stack_bytes: usize,
    /// Memory pool of the job's execution (default 512 MiB).
    pub memory_bytes: usize,
    /// Wall-clock deadline of planning and execution (default 60 s).
    pub deadline: Duration,
    /// Most groups a released table shows (default 100 000); also the largest
    /// public key cross product enumerated. Groups chosen by partition
    /// selection beyond it are cut to those with the largest noisy unit
    /// counts; candidate groups are not capped (a cap that failed the job
    /// would depend on one unit's presence).
    pub max_groups: usize,
    /// Threads DataFusion may use for one job (default 2).
    pub target_partitions: usize,
}

impl Default for EngineLimits {
    fn default() -> Self {
        EngineLimits {
            max_sql_bytes: 64 * 1024,
            max_tokens: 8_192,
            max_operators: 512,
            max_nesting: 32,
            planner_stack_bytes: 64 * 1024 * 1024,
            memory_bytes: 512 * 1024 * 1024,
            deadline: Duration::from_secs(60),
            max_groups: 100_000,
            target_partitions: 2,
        }
    }
}
