//! The plan codec of the sandbox's cluster: Ballista's own codec for its
//! operators (shuffle readers and writers), and every scalar function
//! described by [`sandbox_sql::portable`] — kind and parameters, never a
//! name looked up on the executor.
//!
//! The same codec is installed in the coordinator (encoding the job's
//! plan), the scheduler (decoding it and encoding its stages) and every
//! executor (decoding the stages).

use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr_common::physical_expr::proto_decode::PhysicalExprDecodeCtx;
use datafusion::physical_expr_common::physical_expr::proto_encode::PhysicalExprEncodeCtx;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use std::sync::{Arc, Mutex};

/// See the module docs.
#[derive(Debug, Default)]
pub struct SandboxCodec {
    ballista: BallistaPhysicalExtensionCodec,
    /// When admitting a plan: the first function refused, kept whole
    /// (rule and message) instead of flattened into an encoding error.
    refused: Option<Mutex<Option<sandbox_sql::SqlError>>>,
}

impl SandboxCodec {
    /// A codec that keeps the first refusal for [`SandboxCodec::take_refusal`].
    pub(crate) fn admitting() -> Self {
        SandboxCodec {
            refused: Some(Mutex::new(None)),
            ..Default::default()
        }
    }

    /// The first function this codec refused to encode, if any.
    pub(crate) fn take_refusal(&self) -> Option<sandbox_sql::SqlError> {
        self.refused
            .as_ref()
            .and_then(|slot| slot.lock().ok().and_then(|mut r| r.take()))
    }
}

/// A refusal travels as a DataFusion error whose text names the rule; the
/// runner admits plans before encoding, so this is a second line.
fn codec_error(e: &sandbox_sql::SqlError) -> DataFusionError {
    DataFusionError::Plan(e.to_string())
}

impl PhysicalExtensionCodec for SandboxCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.ballista.try_decode(buf, inputs, ctx, proto_converter)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        self.ballista.try_encode(node, buf, proto_converter)
    }

    /// Every scalar function is written with its description, so the
    /// decoder never falls back to the executor's registry by name.
    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        match sandbox_sql::portable::encode(node) {
            Ok(bytes) => {
                buf.extend(bytes);
                Ok(())
            }
            Err(e) => {
                let error = codec_error(&e);
                if let Some(Ok(mut slot)) = self.refused.as_ref().map(|s| s.lock()) {
                    slot.get_or_insert(e);
                }
                Err(error)
            }
        }
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        if buf.is_empty() {
            return Err(DataFusionError::Plan(format!(
                "scalar function `{name}` arrived without its description"
            )));
        }
        let udf = sandbox_sql::portable::decode(buf).map_err(|e| codec_error(&e))?;
        if udf.name() != name {
            return Err(DataFusionError::Plan(format!(
                "scalar function `{name}` arrived described as `{}`",
                udf.name()
            )));
        }
        Ok(udf)
    }

    fn try_decode_expr(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn PhysicalExpr>],
        ctx: &PhysicalExprDecodeCtx<'_>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        self.ballista.try_decode_expr(buf, inputs, ctx)
    }

    fn try_encode_expr(
        &self,
        node: &Arc<dyn PhysicalExpr>,
        buf: &mut Vec<u8>,
        ctx: &PhysicalExprEncodeCtx<'_>,
    ) -> Result<()> {
        self.ballista.try_encode_expr(node, buf, ctx)
    }

    /// Aggregate and window functions are DataFusion's own. Each is
    /// written with a non-empty definition (its name again), so that the
    /// decoder asks this codec, which takes it from the sandbox's fixed
    /// list (the one a job session registers), instead of looking the
    /// name up in the executor's registry (red team 2026-12-01).
    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        encode_fixed(
            "aggregate",
            node,
            node.name(),
            sandbox_sql::session::aggregate_function,
            buf,
        )
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        decode_fixed("aggregate", name, buf, sandbox_sql::session::aggregate_function)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        encode_fixed("window", node, node.name(), sandbox_sql::session::window_function, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        decode_fixed("window", name, buf, sandbox_sql::session::window_function)
    }
}

/// Writes `name` as the definition of `node` if `node` is the very
/// function `fixed` has under that name, configuration included (a
/// specialised copy would be rebuilt as the plain one).
fn encode_fixed<F: PartialEq>(
    kind: &str,
    node: &F,
    name: &str,
    fixed: fn(&str) -> Option<Arc<F>>,
    buf: &mut Vec<u8>,
) -> Result<()> {
    if fixed(name).is_none_or(|f| f.as_ref() != node) {
        return Err(DataFusionError::Plan(format!(
            "{kind} function `{name}` is not one of the sandbox's"
        )));
    }
    buf.extend(name.as_bytes());
    Ok(())
}

/// The function [`encode_fixed`] wrote, from the fixed list.
fn decode_fixed<F>(kind: &str, name: &str, buf: &[u8], fixed: fn(&str) -> Option<Arc<F>>) -> Result<Arc<F>> {
    if buf != name.as_bytes() {
        return Err(DataFusionError::Plan(format!(
            "{kind} function `{name}` arrived without its definition"
        )));
    }
    fixed(name).ok_or_else(|| DataFusionError::Plan(format!("no {kind} function `{name}`")))
}
