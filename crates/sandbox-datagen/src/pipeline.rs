//! Runs one table's generator on its own thread and feeds its batches to the
//! Parquet writer on the calling thread, through a small bounded channel so
//! that only a few batches are ever in memory.

use std::path::Path;
use std::sync::mpsc::{SyncSender, sync_channel};

use arrow::array::ArrayRef;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::DatagenError;
use crate::schema::{DATASETS, schema};
use crate::writer::{TableWriter, WrittenTable};

/// Rows per generated batch.
pub(crate) const BATCH_ROWS: usize = 64 * 1024;

/// Batches in flight between generator and writer.
const CHANNEL_DEPTH: usize = 4;

/// Hands generated batches to the writer.
pub(crate) struct Emitter {
    dataset: &'static str,
    schema: SchemaRef,
    tx: SyncSender<RecordBatch>,
}

impl Emitter {
    /// Assembles `columns` into a batch of the table's schema and sends it.
    pub(crate) fn emit(&mut self, columns: Vec<ArrayRef>) -> Result<(), DatagenError> {
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|source| DatagenError::Arrow {
            dataset: self.dataset.to_owned(),
            source,
        })?;
        self.tx
            .send(batch)
            .map_err(|_| DatagenError::WriterStopped(self.dataset.to_owned()))
    }
}

/// Generates and writes one table. `produce` runs on a scoped thread and
/// calls `Emitter::emit` for each batch, in order.
pub(crate) fn write_table<P>(
    out_dir: &Path,
    dataset: &'static str,
    rows_per_file: usize,
    produce: P,
) -> Result<WrittenTable, DatagenError>
where
    P: FnOnce(&mut Emitter) -> Result<(), DatagenError> + Send,
{
    let schema = schema(dataset).ok_or_else(|| DatagenError::UnknownDataset {
        name: dataset.to_owned(),
        known: DATASETS.join(", "),
    })?;
    let mut writer = TableWriter::create(out_dir, dataset, schema, rows_per_file)?;
    let (tx, rx) = sync_channel::<RecordBatch>(CHANNEL_DEPTH);
    let mut emitter = Emitter {
        dataset,
        schema: writer.schema().clone(),
        tx,
    };

    let (write_result, produce_result) = std::thread::scope(|scope| {
        let producer = scope.spawn(move || produce(&mut emitter));
        let mut write_result = Ok(());
        for batch in rx.iter() {
            if let Err(e) = writer.write(&batch) {
                write_result = Err(e);
                break;
            }
        }
        // Dropping the receiver makes a still-running producer's next send
        // fail, so it stops instead of blocking forever.
        drop(rx);
        let produce_result = producer
            .join()
            .unwrap_or_else(|_| Err(DatagenError::GeneratorPanicked(dataset.to_owned())));
        (write_result, produce_result)
    });
    // The writer's own error explains a producer's `WriterStopped`.
    write_result?;
    produce_result?;
    writer.finish()
}
