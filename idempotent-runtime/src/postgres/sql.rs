//! The statements of a [`PostgresStore`](super::PostgresStore): every state change is one
//! statement, at READ COMMITTED, fenced by the claim's token.
//!
//! Times are the server's (`clock_timestamp()`), so the clocks of the processes that
//! share a table never matter; durations travel as milliseconds (`$n::bigint`).

/// The default table: the name in `schema.sql`.
pub(super) const DEFAULT_TABLE: &str = "idempotency_records";

/// The migration, for the default table.
pub(super) const SCHEMA: &str = include_str!("schema.sql");

/// The statements for one table, built once per store.
pub(super) struct Statements {
    /// Reads the key's record, or claims the key if it has none: one row out, or none
    /// when another caller's claim committed in between. A row that exists is only read
    /// (no sequence value is drawn, nothing is written), so a replay costs a primary-key
    /// `SELECT`. Atomic through the primary key: of concurrent inserts of one key, one
    /// wins and the others do nothing (`ON CONFLICT DO NOTHING` waits for the winner).
    /// `$1` key, `$2` namespace, `$3` fingerprint, `$4` lease (ms).
    pub(super) begin: String,
    /// Claims a record that is past its `until` and that no live transaction holds.
    /// Atomic through the row lock the subquery takes: one caller takes the row, and a row
    /// a transaction holds is skipped, never waited for. Same parameters as `begin`; the
    /// new token out, or no row.
    pub(super) take_over: String,
    /// Extends the claim's lease, or claims the vanished record again for the same token.
    /// The `ON CONFLICT DO UPDATE … WHERE token` locks the row it checks, so the check and
    /// the write are one step. `$1` key, `$2` token, `$3` lease (ms), `$4` namespace,
    /// `$5` fingerprint.
    pub(super) renew: String,
    /// Completes the claim (or its vanished record) and notifies the channel; no row if
    /// the claim was lost. Fenced and atomic as `renew`; the notification goes out when
    /// the statement commits.
    /// `$1` key, `$2` token, `$3` value, `$4` TTL (ms), `$5` namespace, `$6` fingerprint,
    /// `$7` channel.
    pub(super) complete: String,
    /// Inside the caller's transaction: completes the claim whose row it locked, and
    /// notifies the channel when it commits; no row if the body ended the transaction
    /// (the transaction id is no longer the one that locked the row).
    /// `$1` key, `$2` token, `$3` value, `$4` TTL (ms), `$5` the id of the transaction
    /// that locked the row, `$6` channel.
    pub(super) complete_in: String,
    /// Deletes the claim, fenced by its token, and notifies the channel (a hand-over to one
    /// waiter per process). `$1` key, `$2` token, `$3` channel.
    pub(super) release: String,
    /// Inside the caller's transaction: locks the claim's row for the transaction's
    /// lifetime (its lease from then on); the transaction's id out, or no row if the claim
    /// was lost. `$1` key, `$2` token.
    pub(super) lock: String,
    /// After a `COMMIT` that failed: waits for the transaction that held the row to end,
    /// then reads its token and whether it is completed. `$1` key.
    pub(super) settle: String,
    /// Deletes at most `$1` rows past their `until` that no transaction holds, oldest
    /// first; the count. `SKIP LOCKED`: reapers in several processes take disjoint rows,
    /// and none waits for a holder.
    pub(super) reap: String,
    /// Fails unless the table exists with the columns the statements use.
    pub(super) probe: String,
}

impl Statements {
    pub(super) fn new(table: &str) -> Self {
        let sequence = format!("{table}_token");
        let lease = "clock_timestamp() + $4::bigint * interval '1 millisecond'";
        Statements {
            begin: format!(
                "WITH existing AS (
                    SELECT token, fingerprint, value,
                           (extract(epoch FROM until - clock_timestamp()) * 1000)::bigint AS remaining_ms
                    FROM {table} WHERE key = $1
                ), claimed AS (
                    INSERT INTO {table} (key, namespace, fingerprint, token, value, until)
                    SELECT $1::bytea, $2::text, $3::bytea, nextval('{sequence}'), NULL, {lease}
                    WHERE NOT EXISTS (SELECT 1 FROM existing)
                    ON CONFLICT (key) DO NOTHING
                    RETURNING token
                )
                SELECT true AS claimed, token, NULL::bytea AS fingerprint, NULL::bytea AS value,
                       NULL::bigint AS remaining_ms
                FROM claimed
                UNION ALL
                SELECT false, token, fingerprint, value, remaining_ms FROM existing"
            ),
            take_over: format!(
                "UPDATE {table}
                SET namespace = $2, fingerprint = $3, token = nextval('{sequence}'),
                    value = NULL, until = {lease}
                WHERE key = (
                    SELECT key FROM {table}
                    WHERE key = $1 AND until <= clock_timestamp()
                    FOR UPDATE SKIP LOCKED
                )
                RETURNING token"
            ),
            renew: format!(
                "INSERT INTO {table} AS r (key, namespace, fingerprint, token, value, until)
                VALUES ($1, $4, $5, $2, NULL, clock_timestamp() + $3::bigint * interval '1 millisecond')
                ON CONFLICT (key) DO UPDATE SET until = EXCLUDED.until
                WHERE r.token = $2 AND r.value IS NULL
                RETURNING token"
            ),
            complete: format!(
                "WITH done AS (
                    INSERT INTO {table} AS r (key, namespace, fingerprint, token, value, until)
                    VALUES ($1, $5, $6, $2, $3, clock_timestamp() + $4::bigint * interval '1 millisecond')
                    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, until = EXCLUDED.until
                    WHERE r.token = $2 AND r.value IS NULL
                    RETURNING key
                )
                SELECT pg_notify($7, encode(key, 'hex'))::text
                FROM done"
            ),
            complete_in: format!(
                "WITH done AS (
                    UPDATE {table}
                    SET value = $3, until = clock_timestamp() + $4::bigint * interval '1 millisecond'
                    WHERE key = $1 AND token = $2 AND value IS NULL
                      AND pg_current_xact_id_if_assigned()::text = $5
                    RETURNING key
                )
                SELECT pg_notify($6, encode(key, 'hex'))::text FROM done"
            ),
            release: format!(
                "WITH gone AS (
                    DELETE FROM {table} WHERE key = $1 AND token = $2 AND value IS NULL
                    RETURNING key
                )
                SELECT pg_notify($3, 'r' || encode(key, 'hex'))::text FROM gone"
            ),
            lock: format!(
                "SELECT pg_current_xact_id()::text FROM {table}
                WHERE key = $1 AND token = $2 AND value IS NULL
                FOR UPDATE"
            ),
            settle: format!(
                "SELECT token, value IS NOT NULL FROM {table} WHERE key = $1 FOR KEY SHARE"
            ),
            reap: format!(
                "DELETE FROM {table} WHERE key IN (
                    SELECT key FROM {table}
                    WHERE until <= clock_timestamp()
                    ORDER BY until
                    LIMIT $1
                    FOR UPDATE SKIP LOCKED
                )"
            ),
            probe: format!(
                "SELECT key, namespace, fingerprint, token, value, until, nextval('{sequence}')
                FROM {table} LIMIT 0"
            ),
        }
    }

    /// The migration for `table`, run as one transaction. An index takes its table's
    /// schema, so its name is the bare table name's.
    pub(super) fn schema(table: &str) -> String {
        let bare = table.rsplit('.').next().unwrap_or(table);
        // Processes that start together migrate one at a time: concurrent `CREATE … IF
        // NOT EXISTS` statements can still collide in the catalog.
        let lock =
            format!("SELECT pg_advisory_xact_lock(hashtext('idempotency migration {table}'));\n");
        lock + &SCHEMA
            .replace(&format!("{DEFAULT_TABLE}_until"), &format!("{bare}_until"))
            .replace(DEFAULT_TABLE, table)
    }
}

/// Whether `name` can be the store's table: an unquoted SQL identifier (lower case
/// letters, digits and `_`, not starting with a digit), optionally after a schema name
/// and a dot, short enough that the sequence and index names derived from it fit
/// PostgreSQL's 63 bytes.
pub(super) fn valid_table(name: &str) -> bool {
    let identifier = |part: &str| {
        !part.is_empty()
            && part.len() <= 50
            && !part.starts_with(|c: char| c.is_ascii_digit())
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    match name.split_once('.') {
        Some((schema, table)) => identifier(schema) && identifier(table),
        None => identifier(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_plain_identifiers() {
        for good in ["idempotency_records", "app.idem", "t1", "_x"] {
            assert!(valid_table(good), "{good}");
        }
        for bad in [
            "",
            "Records",
            "1t",
            "a b",
            "t;drop table orders",
            "a.b.c",
            "\"quoted\"",
            ".t",
            &"x".repeat(51),
        ] {
            assert!(!valid_table(bad), "{bad}");
        }
    }

    #[test]
    fn the_schema_names_the_table_everywhere() {
        let schema = Statements::schema("app.idem");
        assert!(!schema.contains(DEFAULT_TABLE));
        assert!(schema.contains("CREATE TABLE IF NOT EXISTS app.idem ("));
        assert!(schema.contains("app.idem_token"));
        assert!(schema.contains("INDEX IF NOT EXISTS idem_until ON app.idem"));
    }
}
