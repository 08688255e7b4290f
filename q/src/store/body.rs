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

        let mut conflicts = Vec::new();
        for chunk in batch.accepted.chunks(INSERT_ROWS) {
            let mut insert = QueryBuilder::<Db>::new(
                concat!(
                    "INSERT INTO records (node, seq, project, function, window_start_ms, \
                     window_ms, ",
                    usage_columns!(),
                    ", signature, hash) "
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
                row.push_bind(signed.signature.clone()).push_bind(signed.hash().to_vec());
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

    /// Streams the records of a period in (project, function, node, seq) order into `each`;
    /// returns how many.
    pub async fn records(
        &self,
        from_ms: u64,
        to_ms: u64,
        project: Option<&str>,
        mut each: impl FnMut(StoredRecord) -> std::io::Result<()>,
    ) -> Result<u64, StoreError> {
        use futures::TryStreamExt;
        use sqlx::Row;
        let sql = concat!(
            "SELECT ",
            record_columns!(),
            " FROM records WHERE window_start_ms >= $1 AND window_start_ms < $2 \
             AND (CAST($3 AS TEXT) IS NULL OR project = CAST($3 AS TEXT)) \
             ORDER BY project, function, node, seq"
        );
        let mut rows =
            sqlx::query(sql).bind(from_ms as i64).bind(to_ms as i64).bind(project).fetch(&self.pool);
        let mut count = 0;
        while let Some(row) = rows.try_next().await? {
            let number = |i: usize| row.try_get::<i64, _>(i).map(|n| n as u64);
            const FIGURES: usize = tau_proto::counters::FIGURES;
            let hash: Vec<u8> = row.try_get(7 + FIGURES)?;
            let mut figures = [0u64; FIGURES];
            for (i, figure) in figures.iter_mut().enumerate() {
                *figure = number(6 + i)?;
            }
            let record = StoredRecord {
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
            };
            each(record).map_err(StoreError::Stopped)?;
            count += 1;
        }
        Ok(count)
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
