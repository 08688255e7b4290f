// The store's queries, written once and compiled for each backend: `store.rs` includes this file
// in a module that names the backend as `Db` and its pool as `Pool`. The SQL is the portable
// subset both speak: `$N` placeholders, `ON CONFLICT`, `RETURNING`, `CASE`.

/// A store on one backend.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
}

impl Store {
    /// Wraps a pool and brings its schema up to date.
    pub async fn new(pool: Pool) -> Result<Self, StoreError> {
        migrator().run(&pool).await.map_err(|e| StoreError::Migrate(e.to_string()))?;
        Ok(Self { pool })
    }

    /// The next sequence number to ask `node` for (1 for a node never read).
    pub async fn cursor(&self, node: &str) -> Result<u64, StoreError> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT next_seq FROM cursors WHERE node = $1")
            .bind(node)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map_or(1, |(seq,)| seq as u64))
    }

    /// Stores one batch in one transaction: its records once per (node, seq), what was kept
    /// aside, its gaps, and the node's cursor. All of it or none of it.
    pub async fn ingest(&self, batch: &Batch) -> Result<Ingested, StoreError> {
        let now = now_ms() as i64;
        let node = batch.node.to_string();
        let mut report = Ingested::default();
        let mut tx = self.pool.begin().await?;
        // The batch's ingest number: the row stays locked until this transaction ends, so
        // batches commit in the order of their numbers.
        let (received,): (i64,) = sqlx::query_as(
            "UPDATE clock SET ingests = ingests + 1 WHERE id = 0 RETURNING ingests",
        )
        .fetch_one(&mut *tx)
        .await?;

        let mut conflicts = Vec::new();
        for chunk in batch.accepted.chunks(INSERT_ROWS) {
            let mut insert = QueryBuilder::<Db>::new(
                concat!(
                    "INSERT INTO records (node, seq, project, function, window_start_ms, \
                     window_ms, ",
                    usage_columns!(),
                    ", signature, hash, received) "
                ),
            );
            insert.push_values(chunk, |mut row, signed| {
                let r = &signed.record;
                row.push_bind(node.clone())
                    .push_bind(r.seq as i64)
                    .push_bind(r.project.clone())
                    .push_bind(r.function.clone())
                    .push_bind(r.window_start_ms as i64)
                    .push_bind(r.window_ms as i64);
                for figure in r.usage.figures() {
                    row.push_bind(figure as i64);
                }
                row.push_bind(signed.signature.clone())
                    .push_bind(signed.hash().to_vec())
                    .push_bind(received);
            });
            insert.push(" ON CONFLICT (node, seq) DO NOTHING RETURNING seq");
            let inserted: Vec<(i64,)> = insert.build_query_as().fetch_all(&mut *tx).await?;
            report.inserted += inserted.len() as u64;
            if inserted.len() < chunk.len() {
                // Some (node, seq) were stored already: the same record again is a replay; a
                // different one under the same number is kept aside.
                let new: std::collections::HashSet<i64> = inserted.into_iter().map(|(s,)| s).collect();
                for signed in chunk.iter().filter(|s| !new.contains(&(s.record.seq as i64))) {
                    let (stored,): (Vec<u8>,) =
                        sqlx::query_as("SELECT hash FROM records WHERE node = $1 AND seq = $2")
                            .bind(&node)
                            .bind(signed.record.seq as i64)
                            .fetch_one(&mut *tx)
                            .await?;
                    if stored == signed.hash() {
                        report.replayed += 1;
                    } else {
                        conflicts.push(signed);
                    }
                }
            }
        }

        let rejected = batch
            .rejected
            .iter()
            .map(|(s, reason)| (s, reason.to_string()))
            .chain(conflicts.into_iter().map(|s| (s, Reason::Conflict.to_string())));
        for (signed, reason) in rejected {
            let done = sqlx::query(
                "INSERT INTO rejected (hash, node, seq, reason, record, seen_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (hash) DO NOTHING",
            )
            .bind(signed.hash().to_vec())
            .bind(signed.record.node.to_string())
            .bind(signed.record.seq as i64)
            .bind(reason)
            .bind(tau_proto::cbor::to_vec(signed).unwrap_or_default())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            report.rejected += done.rows_affected();
        }

        for &(from, to) in &batch.gaps {
            let done = sqlx::query(
                "INSERT INTO gaps (node, from_seq, to_seq, seen_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (node, from_seq) DO NOTHING",
            )
            .bind(&node)
            .bind(from as i64)
            .bind(to as i64)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            report.gaps += done.rows_affected();
        }

        sqlx::query(
            "INSERT INTO cursors (node, next_seq) VALUES ($1, $2) ON CONFLICT (node) DO UPDATE \
             SET next_seq = CASE WHEN excluded.next_seq > cursors.next_seq \
             THEN excluded.next_seq ELSE cursors.next_seq END",
        )
        .bind(&node)
        .bind(batch.next_seq as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(report)
    }

    /// Streams the records of a period stored by an ingest in `(after, through]`, in
    /// (project, function, node, seq) order, into `each`; returns how many. (`+received` keeps
    /// SQLite's planner on the window index, as the ingest bounds are mostly everything.)
    pub async fn records(
        &self,
        from_ms: u64,
        to_ms: u64,
        project: Option<&str>,
        (after, through): (i64, i64),
        mut each: impl FnMut(StoredRecord) -> std::io::Result<()>,
    ) -> Result<u64, StoreError> {
        use futures::TryStreamExt;
        let sql = concat!(
            "SELECT ",
            record_columns!(),
            " FROM records WHERE window_start_ms >= $1 AND window_start_ms < $2 \
             AND (CAST($3 AS TEXT) IS NULL OR project = CAST($3 AS TEXT)) \
             AND +received > $4 AND +received <= $5 \
             ORDER BY project, function, node, seq"
        );
        let mut rows = sqlx::query(sql)
            .bind(from_ms as i64)
            .bind(to_ms as i64)
            .bind(project)
            .bind(after)
            .bind(through)
            .fetch(&self.pool);
        let mut count = 0;
        while let Some(row) = rows.try_next().await? {
            each(stored_record(&row)?).map_err(StoreError::Stopped)?;
            count += 1;
        }
        Ok(count)
    }

    /// Streams up to `limit` records stored after `cursor` (received, seq), in that order,
    /// each with its ingest number.
    pub async fn records_after(
        &self,
        cursor: &Received,
        limit: u64,
        mut each: impl FnMut(Received, StoredRecord) -> std::io::Result<()>,
    ) -> Result<u64, StoreError> {
        use futures::TryStreamExt;
        use sqlx::Row;
        let sql = concat!(
            "SELECT ",
            record_columns!(),
            // A batch is one node's, so (received, seq) orders the records; a row value, so both
            // databases walk that index from the cursor on.
            ", received FROM records WHERE (received, seq) > ($1, $2) \
             ORDER BY received, seq LIMIT $3"
        );
        let mut rows = sqlx::query(sql)
            .bind(cursor.ingest as i64)
            .bind(cursor.seq as i64)
            .bind(limit.min(i64::MAX as u64) as i64)
            .fetch(&self.pool);
        let mut count = 0;
        while let Some(row) = rows.try_next().await? {
            let record = stored_record(&row)?;
            let ingest: i64 = row.try_get(8 + tau_proto::counters::FIGURES)?;
            let at = Received { ingest: ingest as u64, node: record.node.clone(), seq: record.seq };
            each(at, record).map_err(StoreError::Stopped)?;
            count += 1;
        }
        Ok(count)
    }

    /// The number of the last ingest committed.
    pub async fn clock(&self) -> Result<u64, StoreError> {
        let (ingests,): (i64,) = sqlx::query_as("SELECT ingests FROM clock WHERE id = 0")
            .fetch_one(&self.pool)
            .await?;
        Ok(ingests as u64)
    }

    /// Notes a proof made (a second note of the same proof keeps the first).
    pub async fn note_proof(&self, proof: &Proven) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO proofs (period_start_ms, period_end_ms, project, root, amends, through, \
             made_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(proof.period_start_ms as i64)
        .bind(proof.period_end_ms as i64)
        .bind(&proof.project)
        .bind(proof.root.to_vec())
        .bind(proof.amends.to_vec())
        .bind(proof.through as i64)
        .bind(now_ms() as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every proof noted, oldest first.
    pub async fn proofs(&self) -> Result<Vec<Proven>, StoreError> {
        let rows: Vec<ProofRow> = sqlx::query_as(
            "SELECT period_start_ms, period_end_ms, project, root, amends, through FROM proofs \
             ORDER BY made_ms, through, root",
        )
        .fetch_all(&self.pool)
        .await?;
        let bytes32 = |v: Vec<u8>| -> Result<[u8; 32], StoreError> {
            v.try_into().map_err(|_| {
                StoreError::Query(sqlx::Error::Decode("a proof's root is not 32 bytes".into()))
            })
        };
        rows.into_iter()
            .map(|(start, end, project, root, amends, through)| {
                Ok(Proven {
                    period_start_ms: start as u64,
                    period_end_ms: end as u64,
                    project,
                    root: bytes32(root)?,
                    amends: bytes32(amends)?,
                    through: through as u64,
                })
            })
            .collect()
    }

    /// How many records of a period (and project) were stored by an ingest after `through`.
    pub async fn count_after(
        &self,
        from_ms: u64,
        to_ms: u64,
        project: Option<&str>,
        through: u64,
    ) -> Result<u64, StoreError> {
        let (count,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM records WHERE window_start_ms >= $1 AND window_start_ms < $2 \
             AND (CAST($3 AS TEXT) IS NULL OR project = CAST($3 AS TEXT)) AND +received > $4",
        )
        .bind(from_ms as i64)
        .bind(to_ms as i64)
        .bind(project)
        .bind(through as i64)
        .fetch_one(&self.pool)
        .await?;
        Ok(count as u64)
    }

    /// A push target's cursor and the events acknowledged so far.
    pub async fn push_cursor(&self, target: &str) -> Result<(Received, u64), StoreError> {
        let row: Option<(i64, String, i64, i64)> = sqlx::query_as(
            "SELECT ingest, node, seq, events FROM push_cursors WHERE target = $1",
        )
        .bind(target)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map_or_else(Default::default, |(ingest, node, seq, events)| {
            (Received { ingest: ingest as u64, node, seq: seq as u64 }, events as u64)
        }))
    }

    /// Moves a push target's cursor past an acknowledged batch of `events`, without waiting
    /// for the disk ([`RELAXED`]): a cursor lost to a power cut only makes q resend batches the
    /// receiver deduplicates, and a killed q loses nothing committed.
    pub async fn move_push_cursor(
        &self,
        target: &str,
        to: &Received,
        events: u64,
    ) -> Result<(), StoreError> {
        let mut connection = self.pool.acquire().await?;
        sqlx::query(RELAXED.0).execute(&mut *connection).await?;
        let moved = sqlx::query(
            "INSERT INTO push_cursors (target, ingest, node, seq, events) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (target) DO UPDATE SET ingest = excluded.ingest, node = excluded.node, \
             seq = excluded.seq, events = push_cursors.events + excluded.events \
             WHERE (push_cursors.ingest, push_cursors.seq) < (excluded.ingest, excluded.seq)",
        )
        .bind(target)
        .bind(to.ingest as i64)
        .bind(&to.node)
        .bind(to.seq as i64)
        .bind(events as i64)
        .execute(&mut *connection)
        .await;
        if sqlx::query(RELAXED.1).execute(&mut *connection).await.is_err() {
            // Never hand a relaxed connection back to the pool: records are stored durably.
            connection.close_on_drop();
        }
        moved?;
        Ok(())
    }

    /// Whether an alert rule is firing (false for a rule never seen).
    pub async fn alert_firing(&self, rule: &str) -> Result<bool, StoreError> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT firing FROM alerts WHERE rule = $1")
            .bind(rule)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some_and(|(firing,)| firing != 0))
    }

    /// Notes that an alert rule fired or cleared.
    pub async fn set_alert(&self, rule: &str, firing: bool) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO alerts (rule, firing, changed_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (rule) DO UPDATE SET firing = excluded.firing, \
             changed_ms = excluded.changed_ms",
        )
        .bind(rule)
        .bind(i64::from(firing))
        .bind(now_ms() as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// What was kept aside: (node, seq, reason), oldest first.
    pub async fn rejected(&self) -> Result<Vec<(String, u64, String)>, StoreError> {
        let rows: Vec<(String, i64, String)> =
            sqlx::query_as("SELECT node, seq, reason FROM rejected ORDER BY seen_ms, node, seq")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(n, s, r)| (n, s as u64, r)).collect())
    }

    /// The gaps seen: (node, first missing, last missing).
    pub async fn gaps(&self) -> Result<Vec<(String, u64, u64)>, StoreError> {
        let rows: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT node, from_seq, to_seq FROM gaps ORDER BY node, from_seq")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(n, f, t)| (n, f as u64, t as u64)).collect())
    }
}

/// A row of `proofs`: period start and end, project, root, amends, through.
type ProofRow = (i64, i64, String, Vec<u8>, Vec<u8>, i64);

/// A record read by [`record_columns!`], from its first column.
fn stored_record(row: &<Db as sqlx::Database>::Row) -> Result<StoredRecord, StoreError> {
    use sqlx::Row;
    let number = |i: usize| row.try_get::<i64, _>(i).map(|n| n as u64);
    const FIGURES: usize = tau_proto::counters::FIGURES;
    let hash: Vec<u8> = row.try_get(7 + FIGURES)?;
    let mut figures = [0u64; FIGURES];
    for (i, figure) in figures.iter_mut().enumerate() {
        *figure = number(6 + i)?;
    }
    Ok(StoredRecord {
        node: row.try_get(0)?,
        seq: number(1)?,
        project: row.try_get(2)?,
        function: row.try_get(3)?,
        window_start_ms: number(4)?,
        window_ms: number(5)?,
        usage: Usage::from_figures(figures),
        signature: row.try_get(6 + FIGURES)?,
        hash: hash.try_into().map_err(|_| {
            StoreError::Query(sqlx::Error::Decode("a record hash is not 32 bytes".into()))
        })?,
    })
}
