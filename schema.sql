-- xstock-indexer: the database, read top to bottom.
--
-- Applied by `indexer migrate` (and at the start of `indexer run`) inside one transaction under
-- the migration lock, only when the database's schema_version is older than the code's (see
-- indexer/schema.py: versioned, forward-only steps run before this file). Every statement is
-- idempotent, so this file both creates a database and completes an upgraded one.
--
-- Conventions: addresses and hashes are lowercase 0x hex text. Token amounts are numeric(78,0)
-- in base units (the uint256 the contract stores); a decimal-adjusted column beside them is
-- exact (base units times 10^-decimals, no rounding). A multiplier is numeric where
-- 1000000000000000000 (1e18) means 1.0.
--
-- Internal tables (the ledger the indexer writes) come first, then the analyst surface: the
-- views and functions documented in README.md.

CREATE TABLE IF NOT EXISTS schema_version (
    version     integer PRIMARY KEY,
    title       text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    applied_by  text NOT NULL DEFAULT current_setting('application_name')
);
COMMENT ON TABLE schema_version IS 'Schema versions applied to this database, one row per migration step (max(version) is the current one). Its EXCLUSIVE lock is the migration lock. An indexer older than max(version) refuses to run.';
COMMENT ON COLUMN schema_version.version IS 'Step number (indexer/schema.py STEPS).';
COMMENT ON COLUMN schema_version.title IS 'What the step changed.';
COMMENT ON COLUMN schema_version.applied_at IS 'When it was applied.';
COMMENT ON COLUMN schema_version.applied_by IS 'application_name of the process that applied it (command, pid, host).';

-- ---------------------------------------------------------------------------------------------
-- Internal: progress and reorg protection
-- ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS chains (
    chain_id    bigint PRIMARY KEY,
    name        text NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE chains IS 'Chains this database has indexed: the id read from the node and the name from the config.';

CREATE TABLE IF NOT EXISTS cursors (
    chain_id      bigint PRIMARY KEY REFERENCES chains,
    block_number  bigint NOT NULL,
    block_hash    text NOT NULL,
    block_time    timestamptz NOT NULL,
    head_number   bigint,
    head_seen_at  timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE cursors IS 'Per chain, the last block whose events are fully stored (number and hash). Written in the same transaction as the events.';

CREATE TABLE IF NOT EXISTS recent_blocks (
    chain_id      bigint NOT NULL,
    block_number  bigint NOT NULL,
    block_hash    text NOT NULL,
    parent_hash   text NOT NULL,
    block_time    timestamptz,
    PRIMARY KEY (chain_id, block_number)
);
COMMENT ON TABLE recent_blocks IS 'Hashes of recently indexed blocks (at least max_reorg_depth of them), used to find the common ancestor after a reorg.';
COMMENT ON COLUMN recent_blocks.block_time IS 'NULL for a block known by its hash alone (read with blockhash, not its header).';

-- ---------------------------------------------------------------------------------------------
-- Internal: tokens and the share ledger
-- ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS tokens (
    chain_id          bigint NOT NULL,
    token             text NOT NULL,
    symbol            text NOT NULL,
    name              text NOT NULL,
    underlying        text NOT NULL,
    decimals          integer NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('xstock', 'erc20')),
    source            text NOT NULL,
    start_block       bigint NOT NULL,
    synced_block      bigint NOT NULL,
    total_shares      numeric(78,0) NOT NULL DEFAULT 0,
    minted_raw        numeric(78,0) NOT NULL DEFAULT 0,
    burned_raw        numeric(78,0) NOT NULL DEFAULT 0,
    mint_count        bigint NOT NULL DEFAULT 0,
    burn_count        bigint NOT NULL DEFAULT 0,
    transfer_count    bigint NOT NULL DEFAULT 0,
    multiplier        numeric(78,0) NOT NULL DEFAULT 1000000000000000000,
    PRIMARY KEY (chain_id, token)
);
COMMENT ON TABLE tokens IS 'Every followed token: from the config or announced by a followed factory. Counters and the multiplier are as of synced_block.';

CREATE TABLE IF NOT EXISTS token_kinds (
    chain_id      bigint NOT NULL,
    token         text NOT NULL,
    block_number  bigint NOT NULL,
    kind_before   text NOT NULL CHECK (kind_before IN ('xstock', 'erc20')),
    kind          text NOT NULL CHECK (kind IN ('xstock', 'erc20')),
    PRIMARY KEY (chain_id, token, block_number)
);
COMMENT ON TABLE token_kinds IS 'What a token is from block_number on, when an upgrade in place (Upgraded) changed it: a plain token (erc20) that became a share token (xstock) is indexed by shares from that block, its holders converted to the shares the chain then answers (rows of transfer_log with a negative log_index and amount_raw 0). tokens.kind is the kind at the indexed block.';

CREATE TABLE IF NOT EXISTS transfer_log (
    chain_id      bigint NOT NULL,
    token         text NOT NULL,
    block_number  bigint NOT NULL,
    block_time    timestamptz NOT NULL,
    tx_hash       text NOT NULL,
    log_index     integer NOT NULL,
    from_address  text NOT NULL,
    to_address    text NOT NULL,
    amount_raw    numeric(78,0) NOT NULL,
    shares        numeric(78,0) NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('mint', 'burn', 'transfer')),
    PRIMARY KEY (chain_id, token, block_number, log_index)
);
CREATE INDEX IF NOT EXISTS transfer_log_from ON transfer_log (chain_id, token, from_address, block_number);
CREATE INDEX IF NOT EXISTS transfer_log_to ON transfer_log (chain_id, token, to_address, block_number);
COMMENT ON TABLE transfer_log IS 'Storage behind the transfers view: one row per Transfer (+TransferShares) pair, plus the conversion rows of an upgrade in place (negative log_index, amount_raw 0; see token_kinds).';

CREATE TABLE IF NOT EXISTS share_balances (
    chain_id       bigint NOT NULL,
    token          text NOT NULL,
    holder         text NOT NULL,
    shares         numeric(78,0) NOT NULL,
    updated_block  bigint NOT NULL,
    PRIMARY KEY (chain_id, token, holder)
) WITH (fillfactor = 50);
-- Half-empty pages: a batch rewrites most balances, and room on the page keeps those updates
-- HOT (no index entry) while no index covers shares: during a first backfill (see
-- share_balances_rank below). Databases created before this setting get it here (new pages only).
ALTER TABLE share_balances SET (fillfactor = 50);
COMMENT ON TABLE share_balances IS 'The share ledger: shares per holder as of the token''s synced_block, folded from TransferShares (or Transfer for a plain ERC-20). Zero rows are kept so verify can check every address ever seen.';
-- The ledger by size, for top_holders: it reads a token's largest holdings down this index and
-- stops at the rank asked, where ranking the whole ledger sorted every holder of the token. It
-- costs the HOT updates above (an update of shares writes index entries), hence a first backfill
-- drops it and builds it once at its end (first_load.py DEFERRED_INDEXES). Partial (shares > 0,
-- as top_holders asks): a lookup of one holder (chain, token, holder) can then only take the
-- primary key. Whole, the planner of a batch's per-day upkeep on a ledger without statistics took
-- it at equal cost and filtered every balance of the token per holder (2.4 s for one batch).
CREATE INDEX IF NOT EXISTS share_balances_rank ON share_balances (chain_id, token, shares) WHERE shares > 0;

-- Holder counts without counting: a token can have a million holders, and status, token_supply
-- and the demo ask for the count all the time. Triggers on share_balances keep, in the writing
-- transaction (a batch, a rewind, any bulk load alike), the number of addresses with shares > 0
-- per token and a copy of the few rows holding less than 10^9 shares. A holder is an address
-- whose balanceOf is > 0: floor(shares * M / 1e18) > 0, i.e. shares >= ceil(1e18 / M)
-- (holder_threshold). For M >= 1e18 that is every address with shares; below, the addresses
-- under the threshold (dust) are found in small_holdings by one index range probe.
CREATE TABLE IF NOT EXISTS holder_counts (
    chain_id  bigint NOT NULL,
    token     text NOT NULL,
    holders   bigint NOT NULL,
    PRIMARY KEY (chain_id, token)
);
COMMENT ON TABLE holder_counts IS 'Per token, the number of share_balances rows with shares > 0, kept by triggers on share_balances in the same transaction. token_supply.holder_count subtracts the dust (see holder_threshold).';

CREATE TABLE IF NOT EXISTS small_holdings (
    chain_id  bigint NOT NULL,
    token     text NOT NULL,
    holder    text NOT NULL,
    shares    numeric(78,0) NOT NULL,
    PRIMARY KEY (chain_id, token, holder)
);
CREATE INDEX IF NOT EXISTS small_holdings_shares ON small_holdings (chain_id, token, shares);
COMMENT ON TABLE small_holdings IS 'The share_balances rows with 0 < shares < 10^9, kept by triggers on share_balances: where the holders whose balance rounds to 0 are (a multiplier of at least 1e-9 puts the dust threshold below 10^9 shares). Kept apart from share_balances_rank, which a first backfill builds only at its end: the holder count reads this table at any time.';

CREATE OR REPLACE FUNCTION holder_threshold(p_multiplier numeric) RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN p_multiplier > 0 THEN div(1000000000000000000 + p_multiplier - 1, p_multiplier) END;
COMMENT ON FUNCTION holder_threshold(numeric) IS 'The fewest shares worth at least one base unit at multiplier p_multiplier: ceil(1e18 / p_multiplier). An address is a holder when its shares reach it (balanceOf > 0); NULL when p_multiplier <= 0 (no balance is positive).';

CREATE OR REPLACE FUNCTION holder_counts_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO holder_counts AS h (chain_id, token, holders)
    SELECT n.chain_id, n.token, count(*) FROM added n WHERE n.shares > 0 GROUP BY n.chain_id, n.token
    ON CONFLICT (chain_id, token) DO UPDATE SET holders = h.holders + EXCLUDED.holders;
    INSERT INTO small_holdings (chain_id, token, holder, shares)
    SELECT n.chain_id, n.token, n.holder, n.shares FROM added n WHERE n.shares > 0 AND n.shares < 1000000000
    ON CONFLICT (chain_id, token, holder) DO UPDATE SET shares = EXCLUDED.shares;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION holder_counts_added() IS 'Trigger on share_balances (insert): counts the new rows with shares > 0, copies the small ones.';

CREATE OR REPLACE FUNCTION holder_counts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO holder_counts AS h (chain_id, token, holders)
    SELECT x.chain_id, x.token, sum(x.d) FROM (
        SELECT n.chain_id, n.token, 1 AS d FROM after n WHERE n.shares > 0
        UNION ALL
        SELECT o.chain_id, o.token, -1 FROM before o WHERE o.shares > 0) x
     GROUP BY x.chain_id, x.token HAVING sum(x.d) <> 0
    ON CONFLICT (chain_id, token) DO UPDATE SET holders = h.holders + EXCLUDED.holders;
    DELETE FROM small_holdings s USING before o
     WHERE o.shares > 0 AND o.shares < 1000000000
       AND s.chain_id = o.chain_id AND s.token = o.token AND s.holder = o.holder;
    INSERT INTO small_holdings (chain_id, token, holder, shares)
    SELECT n.chain_id, n.token, n.holder, n.shares FROM after n WHERE n.shares > 0 AND n.shares < 1000000000
    ON CONFLICT (chain_id, token, holder) DO UPDATE SET shares = EXCLUDED.shares;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION holder_counts_changed() IS 'Trigger on share_balances (update): moves the counts by the rows that crossed zero, keeps small_holdings in step.';

CREATE OR REPLACE FUNCTION holder_counts_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE holder_counts h SET holders = h.holders - x.n
      FROM (SELECT o.chain_id, o.token, count(*) AS n FROM gone o WHERE o.shares > 0
             GROUP BY o.chain_id, o.token) x
     WHERE h.chain_id = x.chain_id AND h.token = x.token;
    DELETE FROM small_holdings s USING gone o
     WHERE o.shares > 0 AND o.shares < 1000000000
       AND s.chain_id = o.chain_id AND s.token = o.token AND s.holder = o.holder;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION holder_counts_removed() IS 'Trigger on share_balances (delete): uncounts the removed rows.';

CREATE OR REPLACE FUNCTION holder_counts_emptied() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM holder_counts;
    DELETE FROM small_holdings;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION holder_counts_emptied() IS 'Trigger on share_balances (truncate): no holders left.';

CREATE OR REPLACE TRIGGER share_balances_count_insert AFTER INSERT ON share_balances
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION holder_counts_added();
CREATE OR REPLACE TRIGGER share_balances_count_update AFTER UPDATE ON share_balances
    REFERENCING OLD TABLE AS before NEW TABLE AS after FOR EACH STATEMENT EXECUTE FUNCTION holder_counts_changed();
CREATE OR REPLACE TRIGGER share_balances_count_delete AFTER DELETE ON share_balances
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION holder_counts_removed();
CREATE OR REPLACE TRIGGER share_balances_count_truncate AFTER TRUNCATE ON share_balances
    FOR EACH STATEMENT EXECUTE FUNCTION holder_counts_emptied();
REVOKE ALL ON FUNCTION holder_counts_added(), holder_counts_changed(), holder_counts_removed(),
    holder_counts_emptied() FROM PUBLIC;

-- A database from before the counters: count once (the triggers above hold the table's lock
-- until this migration commits, so no batch slips in between).
INSERT INTO small_holdings (chain_id, token, holder, shares)
SELECT b.chain_id, b.token, b.holder, b.shares FROM share_balances b
 WHERE b.shares > 0 AND b.shares < 1000000000 AND NOT EXISTS (SELECT 1 FROM holder_counts)
ON CONFLICT DO NOTHING;
INSERT INTO holder_counts (chain_id, token, holders)
SELECT b.chain_id, b.token, count(*) FROM share_balances b
 WHERE b.shares > 0 AND NOT EXISTS (SELECT 1 FROM holder_counts)
 GROUP BY b.chain_id, b.token;

CREATE TABLE IF NOT EXISTS multiplier_changes (
    chain_id      bigint NOT NULL,
    token         text NOT NULL,
    block_number  bigint NOT NULL,
    block_time    timestamptz NOT NULL,
    multiplier    numeric(78,0) NOT NULL,
    source        text NOT NULL CHECK (source IN ('initial', 'event', 'observed')),
    PRIMARY KEY (chain_id, token, block_number)
);
COMMENT ON TABLE multiplier_changes IS 'The multiplier in force from block_number on (1e18 = 1.0). source: initial = read when indexing began, event = a MultiplierUpdated in that block, observed = found by asking the chain (a silent activation or fee decay).';

CREATE TABLE IF NOT EXISTS token_events (
    chain_id      bigint NOT NULL,
    token         text NOT NULL,
    block_number  bigint NOT NULL,
    block_time    timestamptz NOT NULL,
    tx_hash       text NOT NULL,
    log_index     integer NOT NULL,
    event         text NOT NULL,
    args          jsonb NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);
CREATE INDEX IF NOT EXISTS token_events_token ON token_events (chain_id, token, event, block_number);
COMMENT ON TABLE token_events IS 'Every other event of a followed contract: multiplier updates and schedules, role changes, pause, terms, ownership, upgrades, and NewToken from factories. Integer arguments are decimal strings.';

-- ---------------------------------------------------------------------------------------------
-- Internal: holders per day, kept as the ledger commits
-- ---------------------------------------------------------------------------------------------
--
-- holder_history asks, for every day of a token's life, how many addresses held shares at its
-- end. Replaying the history per read grows with the database; instead each batch adds its own
-- days to holder_days in the batch's transaction (holder_days_commit, one set-based statement)
-- and a rewind puts them back (holder_days_rewind), so a read sums a few hundred rows. Counts
-- are of shares (shares > 0), never of balances: a multiplier change moves no row here.
--
-- A day's joined/exited compare a holder's shares at the start and at the end of the day. A day
-- can span batches (a live block every few seconds), so holder_marks keeps, per holder, the last
-- day it moved and its shares when that day began: a later batch on the same day replaces the
-- holder's contribution to that day instead of adding a second one.

CREATE TABLE IF NOT EXISTS holder_days (
    chain_id     bigint NOT NULL,
    token        text NOT NULL,
    day          date NOT NULL,
    joined       bigint NOT NULL,
    exited       bigint NOT NULL,
    new_holders  bigint NOT NULL,
    net_shares   numeric(78,0) NOT NULL,
    PRIMARY KEY (chain_id, token, day)
);
COMMENT ON TABLE holder_days IS 'Per token and UTC day with a move: addresses whose shares went from 0 to > 0 (joined) and from > 0 to 0 (exited) over the day, addresses receiving shares for the first time ever (new_holders), and shares minted less burned (net_shares). Written by holder_days_commit in each batch''s transaction, undone by holder_days_rewind; equals holder_days_recount().';

CREATE TABLE IF NOT EXISTS holder_marks (
    chain_id      bigint NOT NULL,
    token         text NOT NULL,
    holder        text NOT NULL,
    day           date,
    day_start     numeric(78,0),
    first_in      bigint,
    first_in_day  date,
    PRIMARY KEY (chain_id, token, holder)
) WITH (fillfactor = 70);
COMMENT ON TABLE holder_marks IS 'Per holder: the last UTC day it moved and its shares when that day began (day_start; day NULL when that day is before a rewind''s ancestor day, where no batch can add moves), and its first receipt of shares (block and day; NULL: none yet). What holder_days_commit needs to count a day that spans batches.';

CREATE OR REPLACE FUNCTION holder_days_recount()
    RETURNS TABLE (chain_id bigint, token text, day date, joined bigint, exited bigint, new_holders bigint,
                   net_shares numeric)
    LANGUAGE sql STABLE SET work_mem = '256MB' AS $$
    WITH moves AS (
        SELECT l.chain_id, l.token, a.holder, (l.block_time AT TIME ZONE 'UTC')::date AS day, sum(a.delta) AS delta,
               bool_or(a.received) AS received
          FROM transfer_log l
         CROSS JOIN LATERAL (VALUES (l.to_address, l.shares, l.shares > 0), (l.from_address, -l.shares, false))
               AS a(holder, delta, received)
         WHERE a.holder <> '0x0000000000000000000000000000000000000000'
         GROUP BY 1, 2, 3, 4
    ), walked AS (
        SELECT m.*, sum(m.delta) OVER w AS after, count(*) FILTER (WHERE m.received) OVER w AS receipts
          FROM moves m
        WINDOW w AS (PARTITION BY m.chain_id, m.token, m.holder ORDER BY m.day)
    )
    SELECT w.chain_id, w.token, w.day,
           count(*) FILTER (WHERE w.after - w.delta <= 0 AND w.after > 0),
           count(*) FILTER (WHERE w.after - w.delta > 0 AND w.after <= 0),
           count(*) FILTER (WHERE w.received AND w.receipts = 1),
           sum(w.delta)
      FROM walked w
     GROUP BY w.chain_id, w.token, w.day
$$;
COMMENT ON FUNCTION holder_days_recount() IS 'holder_days recomputed from transfer_log alone (a full replay): what the table must equal. Fills it once on an upgrade.';

CREATE OR REPLACE FUNCTION holder_marks_recount()
    RETURNS TABLE (chain_id bigint, token text, holder text, day date, day_start numeric, first_in bigint,
                   first_in_day date)
    LANGUAGE sql STABLE SET work_mem = '256MB' AS $$
    WITH moves AS (
        SELECT l.chain_id, l.token, a.holder, (l.block_time AT TIME ZONE 'UTC')::date AS day, sum(a.delta) AS delta,
               min(l.block_number) FILTER (WHERE a.received) AS first_in
          FROM transfer_log l
         CROSS JOIN LATERAL (VALUES (l.to_address, l.shares, l.shares > 0), (l.from_address, -l.shares, false))
               AS a(holder, delta, received)
         WHERE a.holder <> '0x0000000000000000000000000000000000000000'
         GROUP BY 1, 2, 3, 4
    )
    SELECT DISTINCT ON (m.chain_id, m.token, m.holder) m.chain_id, m.token, m.holder, m.day,
           sum(m.delta) OVER w - m.delta, min(m.first_in) OVER w,
           min(m.day) FILTER (WHERE m.first_in IS NOT NULL) OVER w
      FROM moves m
    WINDOW w AS (PARTITION BY m.chain_id, m.token, m.holder ORDER BY m.day)
     ORDER BY m.chain_id, m.token, m.holder, m.day DESC
$$;
COMMENT ON FUNCTION holder_marks_recount() IS 'holder_marks recomputed from transfer_log alone (every holder''s last day, never NULL).';


CREATE OR REPLACE FUNCTION holder_days_commit(p_chain_id bigint, p_tokens text[], p_to bigint) RETURNS void
    LANGUAGE sql SET jit = off AS $$
    WITH batch AS (        -- the batch's moves (above each token's synced_block), per holder and day
        SELECT l.token, a.holder, (l.block_time AT TIME ZONE 'UTC')::date AS day, sum(a.delta) AS delta,
               min(l.block_number) FILTER (WHERE a.received) AS first_in
          FROM tokens t
         CROSS JOIN LATERAL (  -- per token: a range of the primary key, whatever the plan's estimates
                SELECT * FROM transfer_log r WHERE r.chain_id = t.chain_id AND r.token = t.token
                   AND r.block_number > t.synced_block AND r.block_number <= p_to OFFSET 0) l
         CROSS JOIN LATERAL (VALUES (l.to_address, l.shares, l.shares > 0), (l.from_address, -l.shares, false))
               AS a(holder, delta, received)
         WHERE t.chain_id = p_chain_id AND t.token = ANY(p_tokens)
           AND a.holder <> '0x0000000000000000000000000000000000000000'
         GROUP BY l.token, a.holder, (l.block_time AT TIME ZONE 'UTC')::date
    ), walked AS (         -- shares before the batch and at the end of each of its days
        SELECT x.token, x.holder, x.day, x.delta, coalesce(b.shares, 0) AS before_batch,
               coalesce(b.shares, 0) + sum(x.delta) OVER w AS after,
               row_number() OVER w AS n, count(*) OVER h AS days,
               k.day AS mark_day, k.day_start AS mark_start, k.first_in AS known_in,
               x.first_in, min(x.first_in) OVER h AS batch_in,
               min(x.day) FILTER (WHERE x.first_in IS NOT NULL) OVER h AS batch_in_day
          FROM batch x
          LEFT JOIN share_balances b ON b.chain_id = p_chain_id AND b.token = x.token AND b.holder = x.holder
          LEFT JOIN holder_marks k ON k.chain_id = p_chain_id AND k.token = x.token AND k.holder = x.holder
        WINDOW h AS (PARTITION BY x.token, x.holder), w AS (h ORDER BY x.day)
    ), scored AS (         -- a first day that an earlier batch counted starts where that batch said
        SELECT w.*, (w.n = 1 AND w.mark_day = w.day) IS TRUE AS again,
               CASE WHEN w.n = 1 AND w.mark_day = w.day THEN w.mark_start ELSE w.after - w.delta END AS start
          FROM walked w
    ), days AS (
        INSERT INTO holder_days AS d (chain_id, token, day, joined, exited, new_holders, net_shares)
        SELECT p_chain_id, s.token, s.day,
               count(*) FILTER (WHERE s.start <= 0 AND s.after > 0)
                 - count(*) FILTER (WHERE s.again AND s.mark_start <= 0 AND s.before_batch > 0),
               count(*) FILTER (WHERE s.start > 0 AND s.after <= 0)
                 - count(*) FILTER (WHERE s.again AND s.mark_start > 0 AND s.before_batch <= 0),
               count(*) FILTER (WHERE s.known_in IS NULL AND s.first_in = s.batch_in),
               sum(s.delta)
          FROM scored s
         GROUP BY s.token, s.day
        ON CONFLICT (chain_id, token, day) DO UPDATE
        SET joined = d.joined + EXCLUDED.joined, exited = d.exited + EXCLUDED.exited,
            new_holders = d.new_holders + EXCLUDED.new_holders, net_shares = d.net_shares + EXCLUDED.net_shares
    )
    INSERT INTO holder_marks AS k (chain_id, token, holder, day, day_start, first_in, first_in_day)
    SELECT p_chain_id, s.token, s.holder, s.day, s.start, coalesce(s.known_in, s.batch_in),
           CASE WHEN s.known_in IS NULL THEN s.batch_in_day END
      FROM scored s
     WHERE s.n = s.days
    ON CONFLICT (chain_id, token, holder) DO UPDATE
    SET day = EXCLUDED.day, day_start = EXCLUDED.day_start,
        first_in = coalesce(k.first_in, EXCLUDED.first_in), first_in_day = coalesce(k.first_in_day, EXCLUDED.first_in_day)
    WHERE (k.day, k.day_start) IS DISTINCT FROM (EXCLUDED.day, EXCLUDED.day_start)  -- the same day: nothing to write
       OR (k.first_in IS NULL AND EXCLUDED.first_in IS NOT NULL)
$$;
COMMENT ON FUNCTION holder_days_commit(bigint, text[], bigint) IS 'A batch''s share of holder_days and holder_marks: its moves are the rows of transfer_log above each token''s synced_block up to p_to, read before share_balances and tokens move (the batch calls it between its COPY and its ledger upsert).';

REVOKE ALL ON FUNCTION holder_days_recount(), holder_marks_recount(), holder_days_commit(bigint, text[], bigint)
    FROM PUBLIC;

-- holders_at(token, block) needs every holder's shares at a block. A checkpoint is the token's
-- whole ledger (shares <> 0) at the end of a batch, taken in the batch's transaction once the
-- token has made checkpoint_moves() moves since the last one: holders_at starts from the nearest
-- of the token's start, a checkpoint and the current ledger, and applies the moves in between
-- (at most half the spacing), whatever the length of the history.

CREATE TABLE IF NOT EXISTS holder_checkpoints (
    chain_id      bigint NOT NULL,
    token         text NOT NULL,
    block_number  bigint NOT NULL,
    moves         bigint NOT NULL,
    PRIMARY KEY (chain_id, token, block_number)
);
COMMENT ON TABLE holder_checkpoints IS 'Blocks at whose end the token''s ledger was copied to checkpoint_shares, with the token''s moves (mints, burns, transfers) up to there. Rows above a rewind''s ancestor are removed with it.';

CREATE TABLE IF NOT EXISTS checkpoint_shares (
    chain_id      bigint NOT NULL,
    token         text NOT NULL,
    block_number  bigint NOT NULL,
    holder        text NOT NULL,
    shares        numeric(78,0) NOT NULL,
    PRIMARY KEY (chain_id, token, block_number, holder)
);
COMMENT ON TABLE checkpoint_shares IS 'Shares of every address with shares <> 0 at the end of a holder_checkpoints block (a chain''s ledger has none below 0; kept exact for one that does, such as a synthetic load).';

CREATE OR REPLACE FUNCTION checkpoint_moves() RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN coalesce(nullif(current_setting('xstock_indexer.checkpoint_moves', true), '')::bigint, 250000);
COMMENT ON FUNCTION checkpoint_moves() IS 'Moves of a token between two checkpoints: 250000, or the setting xstock_indexer.checkpoint_moves (ALTER DATABASE ... SET xstock_indexer.checkpoint_moves = N). Smaller: faster holders_at, more rows kept.';

CREATE OR REPLACE FUNCTION holder_checkpoints_take(p_chain_id bigint, p_tokens text[], p_block bigint) RETURNS void
    LANGUAGE sql SET jit = off AS $$
    WITH due AS (
        SELECT t.token, t.mint_count + t.burn_count + t.transfer_count AS moves
          FROM tokens t
         WHERE t.chain_id = p_chain_id AND t.token = ANY(p_tokens)
           AND t.mint_count + t.burn_count + t.transfer_count
               - coalesce((SELECT max(c.moves) FROM holder_checkpoints c
                            WHERE c.chain_id = t.chain_id AND c.token = t.token), 0) >= checkpoint_moves()
    ), taken AS (
        INSERT INTO holder_checkpoints (chain_id, token, block_number, moves)
        SELECT p_chain_id, d.token, p_block, d.moves FROM due d
        RETURNING token
    )
    INSERT INTO checkpoint_shares (chain_id, token, block_number, holder, shares)
    SELECT p_chain_id, b.token, p_block, b.holder, b.shares
      FROM taken x
      JOIN share_balances b ON b.chain_id = p_chain_id AND b.token = x.token
     WHERE b.shares <> 0
$$;
COMMENT ON FUNCTION holder_checkpoints_take(bigint, text[], bigint) IS 'In a batch, after its ledger upsert: a checkpoint at p_block of each of p_tokens due for one.';
REVOKE ALL ON FUNCTION holder_checkpoints_take(bigint, text[], bigint) FROM PUBLIC;

CREATE OR REPLACE FUNCTION holder_days_rewind(p_chain_id bigint, p_block bigint, p_day date, p_tokens text[])
    RETURNS void LANGUAGE plpgsql SET jit = off AS $$
-- plpgsql: each statement is planned for its values (a rewind reads a few blocks of a long history).
DECLARE
    orphan text;  -- a token whose rows above p_block go
BEGIN
    -- Called before the rewind removes anything. Days after p_day go; p_day is recounted from its
    -- moves up to p_block, with each holder's shares at p_block (now, less the moves above it).
    DELETE FROM holder_days
     WHERE chain_id = p_chain_id AND token = ANY(p_tokens) AND day >= p_day;
    INSERT INTO holder_days (chain_id, token, day, joined, exited, new_holders, net_shares)
    WITH above AS (
        SELECT l.token, a.holder, sum(a.delta) AS delta
          FROM unnest(p_tokens) AS u(token)
         CROSS JOIN LATERAL (SELECT * FROM transfer_log r WHERE r.chain_id = p_chain_id AND r.token = u.token
                                AND r.block_number > p_block OFFSET 0) l
         CROSS JOIN LATERAL (VALUES (l.to_address, l.shares), (l.from_address, -l.shares)) AS a(holder, delta)
         WHERE true
         GROUP BY 1, 2
    ), on_day AS (
        SELECT l.token, a.holder, sum(a.delta) AS delta
          FROM transfer_log l
         CROSS JOIN LATERAL (VALUES (l.to_address, l.shares), (l.from_address, -l.shares)) AS a(holder, delta)
         WHERE l.chain_id = p_chain_id AND l.token = ANY(p_tokens)
           AND (l.block_time AT TIME ZONE 'UTC')::date = p_day AND l.block_number <= p_block
           AND a.holder <> '0x0000000000000000000000000000000000000000'
         GROUP BY 1, 2
    ), walked AS (
        SELECT d.token, d.delta, b.shares - coalesce(x.delta, 0) AS at_block,
               k.first_in <= p_block AND k.first_in_day = p_day AS new
          FROM on_day d
          JOIN share_balances b ON b.chain_id = p_chain_id AND b.token = d.token AND b.holder = d.holder
          LEFT JOIN above x ON x.token = d.token AND x.holder = d.holder
          LEFT JOIN holder_marks k ON k.chain_id = p_chain_id AND k.token = d.token AND k.holder = d.holder
    )
    SELECT p_chain_id, w.token, p_day,
           count(*) FILTER (WHERE w.at_block - w.delta <= 0 AND w.at_block > 0),
           count(*) FILTER (WHERE w.at_block - w.delta > 0 AND w.at_block <= 0),
           count(*) FILTER (WHERE w.new), sum(w.delta)
      FROM walked w
     GROUP BY w.token;
    -- The marks of the holders that moved above p_block: p_day's start where they moved on it.
    WITH above AS (
        SELECT l.token, a.holder, sum(a.delta) AS delta
          FROM unnest(p_tokens) AS u(token)
         CROSS JOIN LATERAL (SELECT * FROM transfer_log r WHERE r.chain_id = p_chain_id AND r.token = u.token
                                AND r.block_number > p_block OFFSET 0) l
         CROSS JOIN LATERAL (VALUES (l.to_address, l.shares), (l.from_address, -l.shares)) AS a(holder, delta)
         WHERE true
           AND a.holder <> '0x0000000000000000000000000000000000000000'
         GROUP BY 1, 2
    ), on_day AS (
        SELECT l.token, a.holder, sum(a.delta) AS delta
          FROM transfer_log l
         CROSS JOIN LATERAL (VALUES (l.to_address, l.shares), (l.from_address, -l.shares)) AS a(holder, delta)
         WHERE l.chain_id = p_chain_id AND l.token = ANY(p_tokens)
           AND (l.block_time AT TIME ZONE 'UTC')::date = p_day AND l.block_number <= p_block
         GROUP BY 1, 2
    )
    UPDATE holder_marks k
       SET day = CASE WHEN d.holder IS NOT NULL THEN p_day END,
           day_start = CASE WHEN d.holder IS NOT NULL THEN b.shares - x.delta - d.delta END,
           first_in = CASE WHEN k.first_in <= p_block THEN k.first_in END,
           first_in_day = CASE WHEN k.first_in <= p_block THEN k.first_in_day END
      FROM above x
      JOIN share_balances b ON b.chain_id = p_chain_id AND b.token = x.token AND b.holder = x.holder
      LEFT JOIN on_day d ON d.token = x.token AND d.holder = x.holder
     WHERE k.chain_id = p_chain_id AND k.token = x.token AND k.holder = x.holder;
    -- Checkpoints above p_block go.
    FOR orphan IN SELECT c.token FROM holder_checkpoints c WHERE c.chain_id = p_chain_id AND c.block_number > p_block
                  GROUP BY c.token LOOP
        DELETE FROM checkpoint_shares c
         WHERE c.chain_id = p_chain_id AND c.token = orphan AND c.block_number > p_block;
        DELETE FROM holder_checkpoints c
         WHERE c.chain_id = p_chain_id AND c.token = orphan AND c.block_number > p_block;
    END LOOP;
    -- Tokens announced above p_block by a factory are forgotten whole.
    FOR orphan IN SELECT t.token FROM tokens t
                   WHERE t.chain_id = p_chain_id AND t.source LIKE 'factory:%' AND t.start_block > p_block LOOP
        DELETE FROM holder_days d WHERE d.chain_id = p_chain_id AND d.token = orphan;
        DELETE FROM holder_marks k WHERE k.chain_id = p_chain_id AND k.token = orphan;
    END LOOP;
END $$;
COMMENT ON FUNCTION holder_days_rewind(bigint, bigint, date, text[]) IS 'Undo holder_days, holder_marks and the checkpoints above block p_block (of UTC day p_day) for p_tokens; part of a rewind, called before it removes the moves.';
REVOKE ALL ON FUNCTION holder_days_rewind(bigint, bigint, date, text[]) FROM PUBLIC;

-- A first backfill into an empty transfer_log leaves holder_days, holder_marks and the checkpoints
-- to its end (one recount costs far less than upkeep in every batch): bulk_load has a row
-- meanwhile. A batch reads that row FOR SHARE before it writes: present, it skips the upkeep;
-- the end deletes the row (waiting for those batches), empties the tables and fills them again.
CREATE TABLE IF NOT EXISTS bulk_load (
    started_at  timestamptz NOT NULL DEFAULT now(),
    started_by  text NOT NULL DEFAULT current_setting('application_name')
);
COMMENT ON TABLE bulk_load IS 'One row while a first backfill defers holder_days, holder_marks and the checkpoints to its end. A row left by a killed backfill is finished by the next writer''s start.';

-- A database from before holder_days and checkpoints, or one loaded in bulk: count once, from
-- transfer_log. Each table is filled only when empty.
CREATE OR REPLACE FUNCTION holder_days_fill() RETURNS void LANGUAGE sql SET jit = off AS $$
    INSERT INTO holder_marks SELECT * FROM holder_marks_recount() WHERE NOT EXISTS (SELECT 1 FROM holder_days);
    INSERT INTO holder_days SELECT * FROM holder_days_recount() WHERE NOT EXISTS (SELECT 1 FROM holder_days);
    -- checkpoints at the block of every checkpoint_moves()-th move of each token
    INSERT INTO holder_checkpoints (chain_id, token, block_number, moves)
    SELECT x.chain_id, x.token, x.block_number, x.moves
      FROM (SELECT b.chain_id, b.token, b.block_number, (sum(b.n) OVER w)::bigint AS moves,
                   (sum(b.n) OVER w)::bigint - b.n AS before
              FROM (SELECT l.chain_id, l.token, l.block_number, count(*) AS n FROM transfer_log l GROUP BY 1, 2, 3) b
            WINDOW w AS (PARTITION BY b.chain_id, b.token ORDER BY b.block_number)) x
     WHERE x.moves / checkpoint_moves() > x.before / checkpoint_moves()
       AND NOT EXISTS (SELECT 1 FROM holder_checkpoints);
    INSERT INTO checkpoint_shares (chain_id, token, block_number, holder, shares)
    WITH points AS (
        SELECT c.chain_id, c.token, c.block_number,
               lag(c.block_number) OVER (PARTITION BY c.chain_id, c.token ORDER BY c.block_number) AS previous
          FROM holder_checkpoints c
    ), deltas AS (         -- per checkpoint: each holder's moves since the previous one
        SELECT p.chain_id, p.token, p.block_number, a.holder, sum(a.delta) AS delta
          FROM points p
          JOIN transfer_log l ON l.chain_id = p.chain_id AND l.token = p.token
                             AND l.block_number > coalesce(p.previous, -1) AND l.block_number <= p.block_number
         CROSS JOIN LATERAL (VALUES (l.to_address, l.shares), (l.from_address, -l.shares)) AS a(holder, delta)
         WHERE a.holder <> '0x0000000000000000000000000000000000000000'
         GROUP BY 1, 2, 3, 4
    ), grid AS (           -- every holder at every checkpoint: the running sum of those moves
        SELECT p.chain_id, p.token, p.block_number, h.holder,
               sum(coalesce(d.delta, 0)) OVER (PARTITION BY p.chain_id, p.token, h.holder ORDER BY p.block_number) AS shares
          FROM (SELECT DISTINCT chain_id, token, holder FROM deltas) h
          JOIN points p ON p.chain_id = h.chain_id AND p.token = h.token
          LEFT JOIN deltas d ON d.chain_id = p.chain_id AND d.token = p.token AND d.block_number = p.block_number
                            AND d.holder = h.holder
    )
    SELECT g.chain_id, g.token, g.block_number, g.holder, g.shares FROM grid g
     WHERE g.shares <> 0 AND NOT EXISTS (SELECT 1 FROM checkpoint_shares)
     ORDER BY 1, 2, 3, 4;  -- each checkpoint's rows together, as a batch writes them
$$;
COMMENT ON FUNCTION holder_days_fill() IS 'Fill holder_days, holder_marks and the checkpoints from transfer_log where they are empty (an upgrade; the end of a first backfill, which empties them first).';
REVOKE ALL ON FUNCTION holder_days_fill() FROM PUBLIC;
SELECT holder_days_fill();

-- ---------------------------------------------------------------------------------------------
-- Analyst surface: helpers
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION to_units(raw numeric, decimals integer) RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN trim_scale(raw * ('1e-' || decimals)::numeric);
COMMENT ON FUNCTION to_units(numeric, integer) IS 'Base units -> token units, exact: raw * 10^-decimals, trailing zeros trimmed.';

CREATE OR REPLACE FUNCTION apply_multiplier(shares numeric, multiplier numeric) RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN div(shares * multiplier, 1000000000000000000);
COMMENT ON FUNCTION apply_multiplier(numeric, numeric) IS 'floor(shares * multiplier / 1e18): token units for a share amount, rounded as the contract rounds.';

-- ---------------------------------------------------------------------------------------------
-- Analyst surface: views
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE VIEW transfers AS
SELECT l.chain_id, l.token, t.symbol, l.block_number, l.block_time, l.tx_hash, l.log_index,
       l.from_address, l.to_address, l.amount_raw, l.shares, l.kind,
       to_units(l.amount_raw, t.decimals) AS amount,
       (l.block_time AT TIME ZONE 'UTC')::date AS day
FROM transfer_log l
JOIN tokens t USING (chain_id, token);
COMMENT ON VIEW transfers IS 'Every mint, burn and transfer of every followed token, in chain order (block_number, log_index).';
COMMENT ON COLUMN transfers.chain_id IS 'EVM chain id (1 = Ethereum, 31337 = anvil).';
COMMENT ON COLUMN transfers.token IS 'Token contract address (lowercase hex); the same xStock has the same address on every chain.';
COMMENT ON COLUMN transfers.symbol IS 'Token symbol, e.g. TSLAx.';
COMMENT ON COLUMN transfers.block_number IS 'Block that contains the move.';
COMMENT ON COLUMN transfers.block_time IS 'Timestamp of that block (UTC).';
COMMENT ON COLUMN transfers.tx_hash IS 'Transaction hash.';
COMMENT ON COLUMN transfers.log_index IS 'Log index of the Transfer event within its block.';
COMMENT ON COLUMN transfers.from_address IS 'Sender; the zero address for a mint.';
COMMENT ON COLUMN transfers.to_address IS 'Receiver; the zero address for a burn.';
COMMENT ON COLUMN transfers.amount_raw IS 'Transfer event value in token base units (what the sender saw leave, at the multiplier of that moment).';
COMMENT ON COLUMN transfers.shares IS 'TransferShares event value in share units; equals amount_raw for a plain ERC-20.';
COMMENT ON COLUMN transfers.kind IS 'mint (from the zero address), burn (to the zero address) or transfer.';
COMMENT ON COLUMN transfers.amount IS 'amount_raw in token units (exact decimal).';
COMMENT ON COLUMN transfers.day IS 'UTC calendar day of block_time. Filter on day (with symbol or token) to use the per-token day index; see daily_activity.';

CREATE OR REPLACE VIEW holders AS
SELECT b.chain_id, b.token, t.symbol, b.holder, b.shares,
       apply_multiplier(b.shares, t.multiplier) AS balance_raw,
       to_units(apply_multiplier(b.shares, t.multiplier), t.decimals) AS balance,
       b.updated_block
FROM share_balances b
JOIN tokens t USING (chain_id, token)
WHERE b.shares > 0 AND b.shares >= holder_threshold(t.multiplier);
COMMENT ON VIEW holders IS 'Current holders (balance > 0) at the indexed block. balance_raw equals balanceOf(holder) there. An address whose shares are worth less than one base unit at the current multiplier (dust) is not listed; its shares stay in the ledger.';
COMMENT ON COLUMN holders.chain_id IS 'EVM chain id.';
COMMENT ON COLUMN holders.token IS 'Token contract address.';
COMMENT ON COLUMN holders.symbol IS 'Token symbol.';
COMMENT ON COLUMN holders.holder IS 'Holder address.';
COMMENT ON COLUMN holders.shares IS 'Internal shares held (corporate actions never change them).';
COMMENT ON COLUMN holders.balance_raw IS 'Balance in base units: floor(shares * multiplier / 1e18), equal to balanceOf at the indexed block.';
COMMENT ON COLUMN holders.balance IS 'balance_raw in token units (exact decimal); one token unit is one underlying share.';
COMMENT ON COLUMN holders.updated_block IS 'Last block in which this holder''s shares moved.';

CREATE OR REPLACE VIEW token_supply AS
SELECT t.chain_id, t.token, t.symbol, t.underlying, t.decimals, t.total_shares, t.multiplier,
       apply_multiplier(t.total_shares, t.multiplier) AS total_supply_raw,
       to_units(apply_multiplier(t.total_shares, t.multiplier), t.decimals) AS total_supply,
       CASE WHEN holder_threshold(t.multiplier) IS NULL THEN 0
            WHEN holder_threshold(t.multiplier) <= 1000000000 THEN coalesce(h.holders, 0)
                 - (SELECT count(*) FROM small_holdings d
                     WHERE d.chain_id = t.chain_id AND d.token = t.token AND d.shares < holder_threshold(t.multiplier))
            ELSE (SELECT count(*) FROM share_balances b
                   WHERE b.chain_id = t.chain_id AND b.token = t.token AND b.shares >= holder_threshold(t.multiplier))
       END AS holder_count,
       t.minted_raw, t.burned_raw, t.synced_block AS indexed_block,
       t.kind, t.name
FROM tokens t
LEFT JOIN holder_counts h ON h.chain_id = t.chain_id AND h.token = t.token;
COMMENT ON VIEW token_supply IS 'Per token supply and holder count at the indexed block. total_supply_raw equals totalSupply() there.';
COMMENT ON COLUMN token_supply.chain_id IS 'EVM chain id.';
COMMENT ON COLUMN token_supply.token IS 'Token contract address.';
COMMENT ON COLUMN token_supply.symbol IS 'Token symbol, e.g. TSLAx.';
COMMENT ON COLUMN token_supply.underlying IS 'Underlying stock symbol, e.g. TSLA.';
COMMENT ON COLUMN token_supply.decimals IS 'Token decimals (18 for every EVM xStock).';
COMMENT ON COLUMN token_supply.total_shares IS 'Sum of all holders'' shares (mints minus burns, in shares).';
COMMENT ON COLUMN token_supply.multiplier IS 'Multiplier in force at the indexed block; 1e18 = 1.0 (a 2:1 split doubles it).';
COMMENT ON COLUMN token_supply.total_supply_raw IS 'floor(total_shares * multiplier / 1e18) in base units; equals totalSupply() at indexed_block.';
COMMENT ON COLUMN token_supply.total_supply IS 'total_supply_raw in token units (= underlying shares), exact decimal.';
COMMENT ON COLUMN token_supply.holder_count IS 'Addresses whose balance is > 0 (balanceOf at indexed_block): shares >= holder_threshold(multiplier). Read from counters kept as the ledger commits, not counted.';
COMMENT ON COLUMN token_supply.minted_raw IS 'Sum of the Transfer values of all mints, base units.';
COMMENT ON COLUMN token_supply.burned_raw IS 'Sum of the Transfer values of all burns, base units.';
COMMENT ON COLUMN token_supply.indexed_block IS 'Block up to which this token is indexed.';
COMMENT ON COLUMN token_supply.kind IS 'xstock (share ledger with a multiplier) or erc20 (plain token), as the contract itself answers.';
COMMENT ON COLUMN token_supply.name IS 'Token name from the contract.';

-- ---------------------------------------------------------------------------------------------
-- Analyst surface: time travel
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION multiplier_at(p_chain_id bigint, p_token text, p_block bigint)
    RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT m.multiplier FROM multiplier_changes m
          WHERE m.chain_id = p_chain_id AND m.token = lower(p_token) AND m.block_number <= p_block
          ORDER BY m.block_number DESC LIMIT 1),
        1000000000000000000)
$$;
COMMENT ON FUNCTION multiplier_at(bigint, text, bigint) IS 'Multiplier in force at the end of block p_block (1e18 = 1.0), including silent activations.';

CREATE OR REPLACE FUNCTION shares_at(p_chain_id bigint, p_token text, p_holder text, p_block bigint)
    RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT sum(l.shares) FROM transfer_log l
                      WHERE l.chain_id = p_chain_id AND l.token = lower(p_token)
                        AND l.to_address = lower(p_holder) AND l.block_number <= p_block), 0)
         - coalesce((SELECT sum(l.shares) FROM transfer_log l
                      WHERE l.chain_id = p_chain_id AND l.token = lower(p_token)
                        AND l.from_address = lower(p_holder) AND l.block_number <= p_block), 0)
$$;
COMMENT ON FUNCTION shares_at(bigint, text, text, bigint) IS 'Shares held by p_holder at the end of block p_block. For the zero address this is burned minus minted shares.';

CREATE OR REPLACE FUNCTION balance_at(p_chain_id bigint, p_token text, p_holder text, p_block bigint)
    RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_block > t.synced_block THEN NULL
                ELSE apply_multiplier(shares_at(p_chain_id, p_token, p_holder, p_block),
                                      multiplier_at(p_chain_id, p_token, p_block)) END
    FROM tokens t WHERE t.chain_id = p_chain_id AND t.token = lower(p_token)
$$;
COMMENT ON FUNCTION balance_at(bigint, text, text, bigint) IS 'balanceOf(p_holder) at the end of block p_block, base units; NULL past the indexed block.';

CREATE OR REPLACE FUNCTION supply_at(p_chain_id bigint, p_token text, p_block bigint)
    RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_block > t.synced_block THEN NULL
                ELSE apply_multiplier(-shares_at(p_chain_id, p_token, '0x0000000000000000000000000000000000000000', p_block),
                                      multiplier_at(p_chain_id, p_token, p_block)) END
    FROM tokens t WHERE t.chain_id = p_chain_id AND t.token = lower(p_token)
$$;
COMMENT ON FUNCTION supply_at(bigint, text, bigint) IS 'totalSupply() at the end of block p_block, base units; NULL past the indexed block.';

-- =============================================================================================
-- Custody and backing
-- =============================================================================================
--
-- Custody records come from `indexer custody import` / `indexer custody pull` (custody_imports,
-- custody_attestations). The backing view compares them with the on-chain supply; the
-- reconciliation rules (backing_conditions) say which flags should be open, and `indexer
-- reconcile` (also run after every import and every committed batch of the daemon) opens and
-- closes rows of backing_flags to match, with a NOTIFY backing_flags per change.
--
-- Time: the reference "now" is the timestamp of the latest indexed block (indexed_now()), so
-- every answer here follows from the data alone. Custody shares are underlying shares as exact
-- numerics; supply is compared in underlying units (token units, multiplier applied: R1).

CREATE TABLE IF NOT EXISTS indexer_settings (
    key         text PRIMARY KEY,
    seconds     numeric NOT NULL CHECK (seconds >= 0),
    source      text NOT NULL DEFAULT 'default',
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO indexer_settings (key, seconds) VALUES
    ('stale_after', 86400), ('settlement_window', 86400), ('privileged_review', 86400), ('privileged_setup', 3600)
ON CONFLICT (key) DO NOTHING;
COMMENT ON TABLE indexer_settings IS 'Durations the backing rules read, in seconds. stale_after and settlement_window are copied from [custody] of the config at every reconcile and import; privileged_review (how long a privileged change stays flagged) and privileged_setup (how long after a contract''s deployment the first assignment of each role is its own set-up, not a change) are set here: UPDATE indexer_settings SET seconds = ... WHERE key = ''privileged_review''.';
COMMENT ON COLUMN indexer_settings.key IS 'stale_after (R4), settlement_window (R6), privileged_review or privileged_setup (R10).';
COMMENT ON COLUMN indexer_settings.seconds IS 'The duration in seconds.';
COMMENT ON COLUMN indexer_settings.source IS 'default (set by schema.sql) or the config file it was copied from.';
COMMENT ON COLUMN indexer_settings.updated_at IS 'When the value was last written (wall clock).';

CREATE SEQUENCE IF NOT EXISTS custody_import_seq;
COMMENT ON SEQUENCE custody_import_seq IS 'Import order of custody payloads (custody_imports.seq).';
CREATE TABLE IF NOT EXISTS custody_imports (
    payload_sha256     text PRIMARY KEY,
    source             text NOT NULL,
    format             text NOT NULL CHECK (format IN ('csv', 'json', 'attestor', 'issuer')),
    records            integer NOT NULL,
    seq                bigint NOT NULL DEFAULT nextval('custody_import_seq'),
    imports            integer NOT NULL DEFAULT 1,
    first_imported_at  timestamptz NOT NULL DEFAULT now(),
    last_imported_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE custody_imports IS 'One row per custody payload (file or HTTP answer), keyed by the SHA-256 of its bytes. Importing the same payload again adds no record; it only makes the payload the latest statement (seq) for the times it covers.';
COMMENT ON COLUMN custody_imports.payload_sha256 IS 'SHA-256 of the raw bytes, lowercase hex.';
COMMENT ON COLUMN custody_imports.source IS 'format:path or format:URL (secrets masked) of the first import.';
COMMENT ON COLUMN custody_imports.format IS 'csv, json, attestor (proof-of-reserve feed) or issuer (issuer API answer).';
COMMENT ON COLUMN custody_imports.records IS 'Records in the payload.';
COMMENT ON COLUMN custody_imports.seq IS 'Order of the latest import of this payload: of two records for one account and one as_of, the one whose payload was imported last counts.';
COMMENT ON COLUMN custody_imports.imports IS 'How many times the payload was imported.';
COMMENT ON COLUMN custody_imports.first_imported_at IS 'Wall-clock time of the first import.';
COMMENT ON COLUMN custody_imports.last_imported_at IS 'Wall-clock time of the latest import.';

CREATE TABLE IF NOT EXISTS custody_attestations (
    id                 bigserial PRIMARY KEY,
    underlying         text NOT NULL,
    custodian          text NOT NULL,
    account            text NOT NULL,
    settled_shares     numeric NOT NULL CHECK (settled_shares >= 0),
    in_transit_shares  numeric NOT NULL DEFAULT 0 CHECK (in_transit_shares >= 0),
    custody_shares     numeric GENERATED ALWAYS AS (settled_shares + in_transit_shares) STORED,
    as_of              timestamptz NOT NULL,
    attestor           text NOT NULL,
    ripcord            boolean NOT NULL DEFAULT false,
    ripcord_details    text,
    source             text NOT NULL,
    payload_sha256     text NOT NULL REFERENCES custody_imports,
    imported_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS custody_attestations_time ON custody_attestations (underlying, as_of);
CREATE INDEX IF NOT EXISTS custody_attestations_payload ON custody_attestations (payload_sha256);
COMMENT ON TABLE custody_attestations IS 'Custody records: shares of an underlying held by a custodian in one account as of a time. The latest record of each (custodian, account) is the position; a ripcord record voids every earlier record of its underlying (see custody_position). Append-only history: the issuer API keeps only its latest value, so this table is the memory.';
COMMENT ON COLUMN custody_attestations.id IS 'Record id, in payload order.';
COMMENT ON COLUMN custody_attestations.underlying IS 'Underlying stock symbol (TSLA), as in tokens.underlying.';
COMMENT ON COLUMN custody_attestations.custodian IS 'Custodian (the issuer API''s provider). Attestor-feed records use the account name.';
COMMENT ON COLUMN custody_attestations.account IS 'Account at the custodian. Issuer API records use the xStock symbol.';
COMMENT ON COLUMN custody_attestations.settled_shares IS 'Settled shares held, exact decimal, in underlying shares.';
COMMENT ON COLUMN custody_attestations.in_transit_shares IS 'Shares bought but not yet settled (T+1), exact decimal.';
COMMENT ON COLUMN custody_attestations.custody_shares IS 'settled_shares + in_transit_shares: what counts as backing (a bought share in settlement is owed to the custodian and backs the token).';
COMMENT ON COLUMN custody_attestations.as_of IS 'Time the record describes (not when it was imported).';
COMMENT ON COLUMN custody_attestations.attestor IS 'Who attested the record (or "attestor feed" / "issuer API" for those formats).';
COMMENT ON COLUMN custody_attestations.ripcord IS 'true: the attestor says the figures must not be trusted; the record counts as missing and voids earlier records of the underlying.';
COMMENT ON COLUMN custody_attestations.ripcord_details IS 'The attestor''s ripcord explanation, when given.';
COMMENT ON COLUMN custody_attestations.source IS 'format:path or format:URL of the payload.';
COMMENT ON COLUMN custody_attestations.payload_sha256 IS 'SHA-256 of the payload the record came in (custody_imports).';
COMMENT ON COLUMN custody_attestations.imported_at IS 'Wall-clock time of the import.';

-- ---------------------------------------------------------------------------------------------
-- Custody and backing: what the rules keep up to date
-- ---------------------------------------------------------------------------------------------
--
-- The rules must not cost more as custody history grows. Three things make them cheap:
-- custody_accounts lists every account (so the position at a time is one index probe per
-- account, not a scan of the records), partial indexes reach an account's latest record and an
-- underlying's latest ripcord directly, and custody_coverage remembers up to which time the
-- answer of last_covered_at can no longer change. An import lowers that time to its earliest
-- record (custody_absorb), a reorg to the common ancestor (trigger on cursors), a new token
-- forgets it (trigger on tokens); each reconcile moves it up to the latest indexed block
-- (custody_coverage_refresh). Supply at a past time is read from the moves after it
-- (transfer_log_supply), which are few for the recent times the rules ask about.

CREATE TABLE IF NOT EXISTS custody_accounts (
    underlying  text NOT NULL,
    custodian   text NOT NULL,
    account     text NOT NULL,
    PRIMARY KEY (underlying, custodian, account)
);
COMMENT ON TABLE custody_accounts IS 'Every (underlying, custodian, account) with a custody record: the accounts a position sums over. Written by each import.';
INSERT INTO custody_accounts (underlying, custodian, account)
SELECT DISTINCT a.underlying, a.custodian, a.account FROM custody_attestations a
 WHERE NOT EXISTS (SELECT 1 FROM custody_accounts)
ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS custody_coverage (
    underlying      text PRIMARY KEY,
    stable_until    timestamptz NOT NULL,
    covered_before  timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE custody_coverage IS 'Memory of last_covered_at: for attestation times before stable_until nothing can change any more (no later import touched them, every chain has indexed past them), and covered_before is the latest of them at which custody held the supply (NULL: none). Maintained by custody_absorb, custody_coverage_refresh and triggers; deleting a row only costs a recomputation.';

CREATE INDEX IF NOT EXISTS custody_attestations_account
    ON custody_attestations (underlying, custodian, account, as_of) WHERE NOT ripcord;
CREATE INDEX IF NOT EXISTS custody_attestations_ripcord ON custody_attestations (underlying, as_of) WHERE ripcord;
CREATE INDEX IF NOT EXISTS transfer_log_supply ON transfer_log (chain_id, token, block_time) INCLUDE (shares)
    WHERE from_address = '0x0000000000000000000000000000000000000000'
       OR to_address = '0x0000000000000000000000000000000000000000';
COMMENT ON INDEX transfer_log_supply IS 'Mints and burns by time: the supply at a past time is the current supply less the mints and plus the burns after it (supply_at_time, unmatched_mint).';

CREATE OR REPLACE FUNCTION custody_absorb(p_sha256 text) RETURNS void LANGUAGE sql AS $$
    WITH touched AS (
        SELECT a.underlying, a.custodian, a.account, min(a.as_of) AS since
          FROM custody_attestations a WHERE a.payload_sha256 = p_sha256
         GROUP BY a.underlying, a.custodian, a.account
    ), added AS (
        INSERT INTO custody_accounts (underlying, custodian, account)
        SELECT t.underlying, t.custodian, t.account FROM touched t
        ON CONFLICT DO NOTHING
    )
    -- An upsert, so a reconcile running beside the import waits on the row (custody_coverage_refresh
    -- locks it first) instead of writing back a horizon computed without these records. A new row
    -- knows nothing yet (-infinity).
    INSERT INTO custody_coverage AS c (underlying, stable_until, covered_before)
    SELECT t.underlying, '-infinity', NULL FROM touched t GROUP BY t.underlying ORDER BY t.underlying
    ON CONFLICT (underlying) DO UPDATE
    SET stable_until = least(c.stable_until, (SELECT min(t.since) FROM touched t WHERE t.underlying = c.underlying)),
        updated_at = now()
$$;
COMMENT ON FUNCTION custody_absorb(text) IS 'Called by each import of a payload (new or again) in its transaction: adds its accounts to custody_accounts and lowers custody_coverage.stable_until to its earliest as_of per underlying (the row locked until the import commits, so a reconcile beside it waits).';

CREATE OR REPLACE FUNCTION custody_coverage_rewound() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE custody_coverage SET stable_until = NEW.block_time, updated_at = now()
     WHERE stable_until > NEW.block_time;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION custody_coverage_rewound() IS 'Trigger on cursors: a rewound chain lowers custody_coverage.stable_until to its new latest block.';
CREATE OR REPLACE TRIGGER cursors_custody_coverage AFTER UPDATE OF block_number ON cursors
    FOR EACH ROW WHEN (NEW.block_number < OLD.block_number OR NEW.block_time < OLD.block_time)
    EXECUTE FUNCTION custody_coverage_rewound();

CREATE OR REPLACE FUNCTION custody_coverage_forget() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM custody_coverage
     WHERE underlying IN (SELECT n.underlying FROM changed n);
    RETURN NULL;
END $$;
COMMENT ON FUNCTION custody_coverage_forget() IS 'Trigger on tokens: a token added or removed changes the supply at every time, so the memory of its underlying is dropped.';
CREATE OR REPLACE TRIGGER tokens_custody_coverage_insert AFTER INSERT ON tokens
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION custody_coverage_forget();
CREATE OR REPLACE TRIGGER tokens_custody_coverage_delete AFTER DELETE ON tokens
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION custody_coverage_forget();

-- Privileged role changes (R10) in a table of their own, kept in step with token_events by a
-- trigger (same transaction as the batch) and cleaned by the reorg rewind through the cascade.
CREATE TABLE IF NOT EXISTS privileged_events (
    chain_id          bigint NOT NULL,
    token             text NOT NULL,
    block_number      bigint NOT NULL,
    block_time        timestamptz NOT NULL,
    tx_hash           text NOT NULL,
    log_index         integer NOT NULL,
    event             text NOT NULL,
    role              text NOT NULL,
    new_address       text,
    previous_address  text,
    PRIMARY KEY (chain_id, block_number, log_index),
    FOREIGN KEY (chain_id, block_number, log_index) REFERENCES token_events ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS privileged_events_time ON privileged_events (block_time);
COMMENT ON TABLE privileged_events IS 'Privileged changes of followed contracts (R10): NewMinter, NewBurner, NewMultiplierUpdater, NewSanctionsList, OwnershipTransferred, Upgraded. Filled from token_events by a trigger; a factory''s own events are here too (token = the factory).';
COMMENT ON COLUMN privileged_events.chain_id IS 'EVM chain id.';
COMMENT ON COLUMN privileged_events.token IS 'Contract that emitted the event (a token, or a factory).';
COMMENT ON COLUMN privileged_events.block_number IS 'Block of the event.';
COMMENT ON COLUMN privileged_events.block_time IS 'Timestamp of that block.';
COMMENT ON COLUMN privileged_events.tx_hash IS 'Transaction hash.';
COMMENT ON COLUMN privileged_events.log_index IS 'Log index within the block.';
COMMENT ON COLUMN privileged_events.event IS 'Event name.';
COMMENT ON COLUMN privileged_events.role IS 'minter, burner, multiplier_updater, sanctions_list, owner or implementation.';
COMMENT ON COLUMN privileged_events.new_address IS 'The address that holds the role from this event on (the new implementation for Upgraded).';
COMMENT ON COLUMN privileged_events.previous_address IS 'The previous owner for OwnershipTransferred; NULL for the other events (look up the previous event of the same role).';

CREATE OR REPLACE FUNCTION privileged_role(p_event text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE p_event
        WHEN 'NewMinter' THEN 'minter' WHEN 'NewBurner' THEN 'burner'
        WHEN 'NewMultiplierUpdater' THEN 'multiplier_updater' WHEN 'NewSanctionsList' THEN 'sanctions_list'
        WHEN 'OwnershipTransferred' THEN 'owner' WHEN 'Upgraded' THEN 'implementation' END;
COMMENT ON FUNCTION privileged_role(text) IS 'The role a privileged event changes; NULL for any other event.';

CREATE OR REPLACE FUNCTION privileged_new_address(p_event text, p_args jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN p_args ->> CASE p_event
        WHEN 'NewMinter' THEN 'minter' WHEN 'NewBurner' THEN 'burner'
        WHEN 'NewMultiplierUpdater' THEN 'multiplierUpdater' WHEN 'NewSanctionsList' THEN 'sanctionsList'
        WHEN 'OwnershipTransferred' THEN 'newOwner' WHEN 'Upgraded' THEN 'implementation' END;
COMMENT ON FUNCTION privileged_new_address(text, jsonb) IS 'The address a privileged event hands its role to, from the event''s args.';

CREATE OR REPLACE FUNCTION privileged_events_capture() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO privileged_events (chain_id, token, block_number, block_time, tx_hash, log_index, event, role,
                                   new_address, previous_address)
    VALUES (NEW.chain_id, NEW.token, NEW.block_number, NEW.block_time, NEW.tx_hash, NEW.log_index, NEW.event,
            privileged_role(NEW.event), privileged_new_address(NEW.event, NEW.args), NEW.args ->> 'previousOwner')
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION privileged_events_capture() IS 'Trigger on token_events: copies each privileged event into privileged_events.';

CREATE OR REPLACE TRIGGER token_events_privileged AFTER INSERT ON token_events
    FOR EACH ROW WHEN (privileged_role(NEW.event) IS NOT NULL)
    EXECUTE FUNCTION privileged_events_capture();

INSERT INTO privileged_events (chain_id, token, block_number, block_time, tx_hash, log_index, event, role,
                               new_address, previous_address)
SELECT chain_id, token, block_number, block_time, tx_hash, log_index, event, privileged_role(event),
       privileged_new_address(event, args), args ->> 'previousOwner'
  FROM token_events WHERE privileged_role(event) IS NOT NULL
ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS backing_flags (
    id            bigserial PRIMARY KEY,
    underlying    text,
    chain_id      bigint,
    token         text,
    rule          text NOT NULL,
    key           text NOT NULL DEFAULT '',
    severity      text NOT NULL CHECK (severity IN ('critical', 'high', 'warning')),
    opened_at     timestamptz NOT NULL,
    opened_block  bigint,
    closed_at     timestamptz,
    closed_block  bigint,
    shortfall     numeric,
    details       jsonb NOT NULL DEFAULT '{}',
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    acknowledged_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS backing_flags_open
    ON backing_flags (rule, coalesce(underlying, ''), coalesce(chain_id, 0), coalesce(token, ''), key)
    WHERE closed_at IS NULL;
COMMENT ON TABLE backing_flags IS 'Reconciliation flags. A flag opens when its rule''s condition starts, stays open (never duplicated) while it holds, and closes when it clears; every open and close is also sent as NOTIFY backing_flags with the flag as JSON. Open flags: WHERE closed_at IS NULL.';
COMMENT ON COLUMN backing_flags.id IS 'Flag id.';
COMMENT ON COLUMN backing_flags.underlying IS 'Underlying symbol; NULL for a privileged change of a factory.';
COMMENT ON COLUMN backing_flags.chain_id IS 'Chain of the token concerned; NULL for a rule about the whole underlying (R3, R4, R5, R9).';
COMMENT ON COLUMN backing_flags.token IS 'Token (or factory) address concerned; NULL for a rule about the whole underlying.';
COMMENT ON COLUMN backing_flags.rule IS 'unbacked_supply (R3), stale_attestation (R4), ripcord (R5), unmatched_mint (R6), multiplier_without_custody (R8), multiplier_mismatch (R9), privileged_change (R10).';
COMMENT ON COLUMN backing_flags.key IS 'What tells two flags of one rule and token apart: the multiplier change block (R8), block:log_index of the event (R10); empty otherwise.';
COMMENT ON COLUMN backing_flags.severity IS 'critical (unbacked supply), high (ripcord, unmatched mint, multiplier rules, privileged change) or warning (stale attestation).';
COMMENT ON COLUMN backing_flags.opened_at IS 'Reference time (latest indexed block time) of the evaluation that opened the flag.';
COMMENT ON COLUMN backing_flags.opened_block IS 'Latest indexed block at opening: of the flag''s chain, else of the chain with the latest block.';
COMMENT ON COLUMN backing_flags.closed_at IS 'Reference time of the evaluation that found the condition cleared; NULL while open.';
COMMENT ON COLUMN backing_flags.closed_block IS 'Latest indexed block at closing.';
COMMENT ON COLUMN backing_flags.shortfall IS 'Underlying shares not backed: supply - custody at the attestation (R3), or at the activation time (R8); NULL for the other rules. Kept current while open.';
COMMENT ON COLUMN backing_flags.details IS 'The condition''s evidence (amounts as decimal strings, times, tx hashes); kept current while open.';
COMMENT ON COLUMN backing_flags.recorded_at IS 'Wall-clock time the row was written.';
COMMENT ON COLUMN backing_flags.updated_at IS 'Wall-clock time of the last change (details, shortfall or closing).';
COMMENT ON COLUMN backing_flags.acknowledged_at IS 'Wall-clock time of the latest acknowledgement (`indexer flags ack ID --note TEXT`); NULL when nobody has acknowledged it. An acknowledged flag stays open while its condition holds; the notes are in backing_flag_notes.';

CREATE TABLE IF NOT EXISTS backing_flag_notes (
    id        bigserial PRIMARY KEY,
    flag_id   bigint NOT NULL REFERENCES backing_flags,
    action    text NOT NULL CHECK (action IN ('acknowledged')),
    note      text NOT NULL,
    noted_by  text NOT NULL DEFAULT current_user,
    noted_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS backing_flag_notes_flag ON backing_flag_notes (flag_id, noted_at);
COMMENT ON TABLE backing_flag_notes IS 'The history people add to a flag: every acknowledgement with its note, never rewritten.';
COMMENT ON COLUMN backing_flag_notes.id IS 'Note id.';
COMMENT ON COLUMN backing_flag_notes.flag_id IS 'The flag (backing_flags.id).';
COMMENT ON COLUMN backing_flag_notes.action IS 'acknowledged.';
COMMENT ON COLUMN backing_flag_notes.note IS 'What the person wrote (--note).';
COMMENT ON COLUMN backing_flag_notes.noted_by IS 'Database role that wrote it.';
COMMENT ON COLUMN backing_flag_notes.noted_at IS 'Wall-clock time.';

-- ---------------------------------------------------------------------------------------------
-- Custody and backing: functions
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION indexed_now() RETURNS timestamptz
    LANGUAGE sql STABLE
    RETURN coalesce((SELECT max(c.block_time) FROM cursors c), now());
COMMENT ON FUNCTION indexed_now() IS 'The reference "now" of every backing rule: the timestamp of the latest indexed block over all chains (the wall clock only while nothing is indexed).';

CREATE OR REPLACE FUNCTION setting_interval(p_key text) RETURNS interval
    LANGUAGE sql STABLE
    RETURN (SELECT s.seconds::double precision * interval '1 second' FROM indexer_settings s WHERE s.key = p_key);
COMMENT ON FUNCTION setting_interval(text) IS 'indexer_settings.seconds of p_key as an interval.';

CREATE OR REPLACE FUNCTION multiplier_at_time(p_chain_id bigint, p_token text, p_at timestamptz)
    RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT m.multiplier FROM multiplier_changes m
          WHERE m.chain_id = p_chain_id AND m.token = lower(p_token)
            AND (m.block_time <= p_at OR m.source = 'initial')
          ORDER BY m.block_number DESC LIMIT 1),
        1000000000000000000)
$$;
COMMENT ON FUNCTION multiplier_at_time(bigint, text, timestamptz) IS 'Multiplier in force at time p_at (1e18 = 1.0): that of the latest indexed block at or before p_at.';

CREATE OR REPLACE FUNCTION supply_at_time(p_chain_id bigint, p_token text, p_at timestamptz)
    RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN c.block_time IS NOT NULL AND p_at >= c.block_time AND t.synced_block >= c.block_number
            THEN apply_multiplier(t.total_shares, t.multiplier)
        ELSE apply_multiplier(
            t.total_shares
          - coalesce((SELECT sum(CASE WHEN l.from_address = '0x0000000000000000000000000000000000000000'
                                      THEN l.shares ELSE 0 END)
                           - sum(CASE WHEN l.to_address = '0x0000000000000000000000000000000000000000'
                                      THEN l.shares ELSE 0 END)
                        FROM transfer_log l
                       WHERE l.chain_id = t.chain_id AND l.token = t.token AND l.block_time > p_at
                         AND (l.from_address = '0x0000000000000000000000000000000000000000'
                              OR l.to_address = '0x0000000000000000000000000000000000000000')), 0),
            multiplier_at_time(t.chain_id, t.token, p_at)) END
    FROM tokens t LEFT JOIN cursors c ON c.chain_id = t.chain_id
    WHERE t.chain_id = p_chain_id AND t.token = lower(p_token)
$$;
COMMENT ON FUNCTION supply_at_time(bigint, text, timestamptz) IS 'totalSupply() at time p_at, base units: shares minted minus burned in blocks at or before p_at (read as the current shares less the mints and plus the burns after p_at: few for a recent time), times the multiplier in force then. At or after the latest indexed block: the current supply.';

CREATE OR REPLACE FUNCTION underlying_supply_at(p_underlying text, p_at timestamptz)
    RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(to_units(supply_at_time(t.chain_id, t.token, p_at), t.decimals)), 0)
      FROM tokens t WHERE t.underlying = p_underlying
$$;
COMMENT ON FUNCTION underlying_supply_at(text, timestamptz) IS 'Supply of an underlying at time p_at in underlying shares (token units, multiplier applied), summed over every chain and token mapped to it (R1, R2).';

CREATE OR REPLACE FUNCTION custody_ripcord_at(p_underlying text, p_at timestamptz)
    RETURNS TABLE (id bigint, as_of timestamptz, seq bigint) LANGUAGE sql STABLE ROWS 1 AS $$
    SELECT a.id, a.as_of, i.seq FROM custody_attestations a JOIN custody_imports i USING (payload_sha256)
     WHERE a.underlying = p_underlying AND a.ripcord
       AND a.as_of = (SELECT x.as_of FROM custody_attestations x
                       WHERE x.underlying = p_underlying AND x.ripcord AND x.as_of <= p_at
                       ORDER BY x.as_of DESC LIMIT 1)
     ORDER BY i.seq DESC, a.id DESC LIMIT 1
$$;
COMMENT ON FUNCTION custody_ripcord_at(text, timestamptz) IS 'The latest ripcord record of an underlying with as_of <= p_at (same as_of: the payload imported last); no row if none.';

CREATE OR REPLACE FUNCTION custody_position(p_underlying text, p_at timestamptz)
    RETURNS TABLE (custody_shares numeric, settled_shares numeric, in_transit_shares numeric,
                   custody_as_of timestamptz, accounts integer, ripcord_as_of timestamptz)
    LANGUAGE sql STABLE ROWS 1 AS $$
    WITH cord AS (
        SELECT * FROM custody_ripcord_at(p_underlying, p_at)
    ), latest AS (
        SELECT r.*
          FROM custody_accounts c
         CROSS JOIN LATERAL (
               SELECT a.id, a.as_of, a.custody_shares, a.settled_shares, a.in_transit_shares, i.seq
                 FROM custody_attestations a JOIN custody_imports i USING (payload_sha256)
                WHERE a.underlying = c.underlying AND a.custodian = c.custodian AND a.account = c.account
                  AND NOT a.ripcord
                  AND a.as_of = (SELECT x.as_of FROM custody_attestations x
                                  WHERE x.underlying = c.underlying AND x.custodian = c.custodian
                                    AND x.account = c.account AND NOT x.ripcord AND x.as_of <= p_at
                                  -- the order of custody_attestations_account: one probe of it
                                  ORDER BY x.underlying DESC, x.custodian DESC, x.account DESC, x.as_of DESC
                                  LIMIT 1)
                ORDER BY i.seq DESC, a.id DESC LIMIT 1) r
         WHERE c.underlying = p_underlying
           AND NOT EXISTS (SELECT 1 FROM cord k WHERE (r.as_of, r.seq, r.id) < (k.as_of, k.seq, k.id))
    )
    SELECT sum(l.custody_shares), sum(l.settled_shares), sum(l.in_transit_shares), max(l.as_of),
           count(*)::integer, (SELECT k.as_of FROM cord k)
      FROM latest l
$$;
COMMENT ON FUNCTION custody_position(text, timestamptz) IS 'Custody of an underlying as known at p_at: for each (custodian, account) its latest record with as_of <= p_at (same as_of: the payload imported last), summed (custody = settled + in transit). A ripcord record counts as missing and voids every earlier record of the underlying (R5): custody is then only what was attested after it. custody_as_of is the newest as_of used; all NULL (accounts 0) when no valid record remains. Costs one index probe per account of the underlying, whatever the history.';

CREATE OR REPLACE FUNCTION custody_covers(p_underlying text, p_at timestamptz) RETURNS boolean
    LANGUAGE sql STABLE AS $$
    SELECT p.custody_as_of IS NOT NULL
           AND p.custody_shares >= underlying_supply_at(p_underlying, p_at) * (1 - 1e-9)
      FROM custody_position(p_underlying, p_at) p
$$;
COMMENT ON FUNCTION custody_covers(text, timestamptz) IS 'Whether custody as known at p_at holds the whole supply at p_at (within the 1e-9 rounding epsilon).';

CREATE OR REPLACE FUNCTION custody_covered_between(p_underlying text, p_from timestamptz, p_to timestamptz,
                                                   p_otherwise timestamptz) RETURNS timestamptz
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    t timestamptz := p_to;
BEGIN
    LOOP  -- newest first, one index probe per attestation time (never the whole range at once)
        SELECT a.as_of INTO t FROM custody_attestations a
         WHERE a.underlying = p_underlying AND NOT a.ripcord AND a.as_of < t AND a.as_of >= p_from
         ORDER BY a.underlying DESC, a.as_of DESC LIMIT 1;
        IF NOT FOUND THEN
            RETURN p_otherwise;
        END IF;
        IF custody_covers(p_underlying, t) THEN
            RETURN t;
        END IF;
    END LOOP;
END $$;
COMMENT ON FUNCTION custody_covered_between(text, timestamptz, timestamptz, timestamptz) IS 'The latest attestation time in [p_from, p_to) at which custody held the whole supply; p_otherwise if none.';

CREATE OR REPLACE FUNCTION custody_coverage_horizon(p_underlying text) RETURNS timestamptz
    LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN count(*) = 0 THEN 'infinity'::timestamptz
                WHEN bool_or(c.block_time IS NULL OR t.synced_block < c.block_number) THEN '-infinity'
                ELSE min(c.block_time) END
      FROM tokens t LEFT JOIN cursors c USING (chain_id)
     WHERE t.underlying = p_underlying
$$;
COMMENT ON FUNCTION custody_coverage_horizon(text) IS 'The time before which the supply of an underlying can no longer change: the oldest latest-indexed block over its chains (-infinity while a token catches up, infinity without tokens).';

CREATE OR REPLACE FUNCTION custody_coverage_known(p_underlying text, OUT known_from timestamptz,
                                                  OUT covered timestamptz) LANGUAGE plpgsql STABLE AS $$
DECLARE
    s custody_coverage%ROWTYPE;
BEGIN
    SELECT * INTO s FROM custody_coverage c WHERE c.underlying = p_underlying;
    known_from := least(s.stable_until, custody_coverage_horizon(p_underlying));
    covered := s.covered_before;
    IF NOT FOUND OR known_from IS NULL OR covered >= known_from THEN
        known_from := '-infinity';
        covered := NULL;
    END IF;
END $$;
COMMENT ON FUNCTION custody_coverage_known(text) IS 'From custody_coverage: below known_from the latest covered time is covered (NULL: none); above it last_covered_at must look.';

CREATE OR REPLACE FUNCTION last_covered_at(p_underlying text) RETURNS timestamptz
    LANGUAGE sql STABLE AS $$
    SELECT custody_covered_between(p_underlying, k.known_from, 'infinity', k.covered)
      FROM custody_coverage_known(p_underlying) k
$$;

CREATE OR REPLACE FUNCTION custody_coverage_refresh() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    u text;
    k record;
    h timestamptz;
    n integer := 0;
BEGIN
    FOR u IN SELECT DISTINCT c.underlying FROM custody_accounts c ORDER BY 1 LOOP
        -- The row is locked before anything is read: an import's custody_absorb lowers it in its own
        -- transaction, and a horizon computed from a snapshot without that import's records must
        -- not be written over it (this statement waits for the import, the next ones see it).
        INSERT INTO custody_coverage (underlying, stable_until) VALUES (u, '-infinity') ON CONFLICT DO NOTHING;
        PERFORM 1 FROM custody_coverage c WHERE c.underlying = u FOR UPDATE;
        h := custody_coverage_horizon(u);
        SELECT * INTO k FROM custody_coverage_known(u);
        IF k.known_from = h THEN
            CONTINUE;
        END IF;
        UPDATE custody_coverage c
           SET stable_until = h, covered_before = custody_covered_between(u, k.known_from, h, k.covered),
               updated_at = now()
         WHERE c.underlying = u;
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;
REVOKE ALL ON FUNCTION custody_absorb(text), custody_coverage_rewound(), custody_coverage_forget(),
    custody_coverage_refresh() FROM PUBLIC;  -- writers: the indexer's own login (the owner) runs them
COMMENT ON FUNCTION custody_coverage_refresh() IS 'Moves custody_coverage up to the latest indexed blocks, looking only at the attestation times in between; run by every reconcile. Returns the underlyings updated.';

COMMENT ON FUNCTION last_covered_at(text) IS 'The latest attestation time at which custody held the whole supply of that moment; NULL if never. A mint or a multiplier increase before it is covered (R6, R8). Exact at any moment; it looks only at the times custody_coverage does not settle.';

CREATE OR REPLACE FUNCTION backing_eval(p_underlying text, p_records_until timestamptz, p_now timestamptz)
    RETURNS TABLE (onchain_supply numeric, custody_shares numeric, custody_as_of timestamptz, ratio numeric,
                   shortfall numeric, status text, settled_shares numeric, in_transit_shares numeric,
                   accounts integer, current_supply numeric)
    LANGUAGE sql STABLE ROWS 1 AS $$
    WITH p AS (
        SELECT * FROM custody_position(p_underlying, p_records_until)
    ), s AS (
        SELECT underlying_supply_at(p_underlying, coalesce(p.custody_as_of, p_now)) AS at_as_of,
               underlying_supply_at(p_underlying, p_now) AS now_supply
          FROM p
    )
    SELECT s.at_as_of, p.custody_shares, p.custody_as_of,
           CASE WHEN s.at_as_of > 0 THEN trim_scale(p.custody_shares / s.at_as_of) END,
           CASE WHEN p.custody_as_of IS NOT NULL THEN greatest(0, s.at_as_of - p.custody_shares) END,
           CASE WHEN p.custody_as_of IS NULL THEN 'no_attestation'
                WHEN p.custody_as_of < p_now - setting_interval('stale_after') THEN 'stale'
                WHEN p.custody_shares < s.at_as_of * (1 - 1e-9) THEN 'unbacked'
                ELSE 'backed' END,
           p.settled_shares, p.in_transit_shares, p.accounts, s.now_supply
      FROM p, s
$$;
COMMENT ON FUNCTION backing_eval(text, timestamptz, timestamptz) IS 'The backing of one underlying from the records with as_of <= p_records_until, judged at p_now; the body of the backing view and of backing_at.';

CREATE OR REPLACE FUNCTION backing_at(p_underlying text, p_at timestamptz)
    RETURNS TABLE (underlying text, onchain_supply numeric, custody_shares numeric, custody_as_of timestamptz,
                   ratio numeric, shortfall numeric, status text)
    LANGUAGE sql STABLE ROWS 1 AS $$
    SELECT p_underlying, b.onchain_supply, b.custody_shares, b.custody_as_of, b.ratio, b.shortfall, b.status
      FROM backing_eval(p_underlying, p_at, p_at) b
$$;
COMMENT ON FUNCTION backing_at(text, timestamptz) IS 'Time travel: was p_underlying backed at p_at? The attestations known then (as_of <= p_at), the supply from the ledger history at their as_of time, and staleness judged at p_at. Same columns and meanings as the backing view.';

-- ---------------------------------------------------------------------------------------------
-- Custody and backing: views
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE VIEW backing AS
SELECT u.underlying, b.onchain_supply, b.custody_shares, b.custody_as_of, b.ratio, b.shortfall, b.status,
       b.settled_shares, b.in_transit_shares, b.accounts, b.current_supply, n.now AS evaluated_at
  FROM (SELECT t.underlying FROM tokens t UNION SELECT a.underlying FROM custody_accounts a) u
 CROSS JOIN (SELECT indexed_now() AS now) n
 CROSS JOIN LATERAL backing_eval(u.underlying, 'infinity', n.now) b;
COMMENT ON VIEW backing IS 'One row per underlying: is its on-chain supply backed by custody? Judged at the latest indexed block time with every stored record (one dated after the latest block counts, against the current supply). Status order: no_attestation, stale, unbacked, backed.';
COMMENT ON COLUMN backing.underlying IS 'Underlying stock symbol (TSLA).';
COMMENT ON COLUMN backing.onchain_supply IS 'Supply in underlying shares (multiplier applied) over every chain and token of the underlying, at custody_as_of (R1); the current supply when there is no attestation.';
COMMENT ON COLUMN backing.custody_shares IS 'Settled plus in-transit shares of the latest valid record of each custody account; NULL without one.';
COMMENT ON COLUMN backing.custody_as_of IS 'Newest as_of among those records.';
COMMENT ON COLUMN backing.ratio IS 'custody_shares / onchain_supply; NULL when the supply is 0 or there is no custody.';
COMMENT ON COLUMN backing.shortfall IS 'max(0, onchain_supply - custody_shares) in underlying shares (R3); NULL without custody.';
COMMENT ON COLUMN backing.status IS 'no_attestation (no valid record: none, or voided by a ripcord), stale (custody_as_of older than stale_after before the latest block: unverified, never backed), unbacked (custody/supply < 1 - 1e-9), backed.';
COMMENT ON COLUMN backing.settled_shares IS 'The settled part of custody_shares.';
COMMENT ON COLUMN backing.in_transit_shares IS 'The in-transit part of custody_shares.';
COMMENT ON COLUMN backing.accounts IS 'Custody accounts counted.';
COMMENT ON COLUMN backing.current_supply IS 'Supply in underlying shares at the latest indexed block (compare onchain_supply, which is at custody_as_of).';
COMMENT ON COLUMN backing.evaluated_at IS 'The reference now: timestamp of the latest indexed block.';

CREATE OR REPLACE VIEW backing_conditions AS
WITH n AS (
    SELECT indexed_now() AS now, setting_interval('settlement_window') AS settle,
           setting_interval('privileged_review') AS review
), tracked AS (
    SELECT u.underlying, last_covered_at(u.underlying) AS covered
      FROM (SELECT DISTINCT a.underlying FROM custody_accounts a) u
), newest AS (
    SELECT a.*
      FROM tracked tr
     CROSS JOIN LATERAL custody_position(tr.underlying, 'infinity') p
     CROSS JOIN LATERAL custody_ripcord_at(tr.underlying, 'infinity') k
      JOIN custody_attestations a ON a.id = k.id
     WHERE p.accounts = 0
), b AS (
    SELECT k.* FROM backing k JOIN tracked USING (underlying)
), increases AS (
    SELECT x.*, p.custody_shares, underlying_supply_at(x.underlying, x.block_time) AS supply
      FROM (SELECT m.chain_id, m.token, m.block_number, m.block_time, m.multiplier, m.source, t.underlying, tr.covered,
                   lag(m.multiplier) OVER (PARTITION BY m.chain_id, m.token ORDER BY m.block_number) AS previous
              FROM multiplier_changes m JOIN tokens t USING (chain_id, token) JOIN tracked tr USING (underlying)) x
     CROSS JOIN LATERAL custody_position(x.underlying, x.block_time) p
     WHERE x.source <> 'initial' AND x.multiplier > coalesce(x.previous, 1000000000000000000)
       AND (x.covered IS NULL OR x.covered < x.block_time)
), same_time AS (
    SELECT t.underlying, min(c.block_time) AS at
      FROM tokens t JOIN cursors c USING (chain_id)
     WHERE t.kind = 'xstock' GROUP BY t.underlying HAVING count(*) > 1
), in_force AS (
    SELECT t.underlying, t.chain_id, t.token, s.at, multiplier_at_time(t.chain_id, t.token, s.at) AS multiplier
      FROM tokens t JOIN same_time s USING (underlying) WHERE t.kind = 'xstock'
)
SELECT 'unbacked_supply' AS rule, 'critical' AS severity, b.underlying, NULL::bigint AS chain_id, NULL::text AS token,
       '' AS key, b.shortfall,
       jsonb_build_object('onchain_supply', b.onchain_supply::text, 'custody_shares', b.custody_shares::text,
                          'custody_as_of', b.custody_as_of, 'ratio', b.ratio::text) AS details
  FROM b WHERE b.custody_as_of IS NOT NULL AND b.custody_shares < b.onchain_supply * (1 - 1e-9)
UNION ALL
SELECT 'stale_attestation', 'warning', b.underlying, NULL, NULL, '', NULL,
       jsonb_build_object('custody_as_of', b.custody_as_of, 'evaluated_at', b.evaluated_at,
                          'age_seconds', extract(epoch FROM b.evaluated_at - b.custody_as_of)::bigint,
                          'stale_after_seconds', extract(epoch FROM setting_interval('stale_after'))::bigint)
  FROM b WHERE b.status = 'stale'
UNION ALL
SELECT 'ripcord', 'high', r.underlying, NULL, NULL, '', NULL,
       jsonb_build_object('as_of', r.as_of, 'custodian', r.custodian, 'account', r.account, 'attestor', r.attestor,
                          'ripcord_details', r.ripcord_details, 'source', r.source)
  FROM newest r
UNION ALL
SELECT 'unmatched_mint', 'high', t.underlying, t.chain_id, t.token, '', NULL,
       jsonb_build_object('mints', m.mints, 'amount', m.amount::text, 'first_block', m.first_block,
                          'first_time', m.first_time, 'first_tx', m.first_tx, 'last_block', m.last_block,
                          'covered_until', tr.covered, 'settlement_window_seconds', extract(epoch FROM n.settle)::bigint)
  FROM tracked tr CROSS JOIN n
  JOIN tokens t ON t.underlying = tr.underlying
 CROSS JOIN LATERAL (  -- per token, so the time range is a condition on transfer_log_supply
       SELECT count(*) AS mints, sum(to_units(l.amount_raw, t.decimals)) AS amount,
              min(l.block_number) AS first_block, min(l.block_time) AS first_time,
              (array_agg(l.tx_hash ORDER BY l.block_number, l.log_index))[1] AS first_tx,
              max(l.block_number) AS last_block
         FROM transfer_log l
        WHERE l.chain_id = t.chain_id AND l.token = t.token
          AND l.from_address = '0x0000000000000000000000000000000000000000'
          AND l.block_time <= n.now - n.settle AND l.block_time > coalesce(tr.covered, '-infinity')) m
 WHERE m.mints > 0
UNION ALL
SELECT 'multiplier_without_custody', 'high', i.underlying, i.chain_id, i.token, i.block_number::text,
       greatest(0, i.supply - coalesce(i.custody_shares, 0)),
       jsonb_build_object('block_number', i.block_number, 'activated_at', i.block_time,
                          'previous_multiplier', coalesce(i.previous, 1000000000000000000)::text,
                          'multiplier', i.multiplier::text, 'source', i.source, 'supply', i.supply::text,
                          'custody_shares', i.custody_shares::text, 'covered_until', i.covered)
  FROM increases i
 WHERE NOT (i.custody_shares IS NOT NULL AND i.custody_shares >= i.supply * (1 - 1e-9))
UNION ALL
SELECT 'multiplier_mismatch', 'high', f.underlying, NULL, NULL, '', NULL,
       jsonb_build_object('at', f.at, 'multipliers', jsonb_agg(jsonb_build_object(
           'chain_id', f.chain_id, 'token', f.token, 'multiplier', f.multiplier::text) ORDER BY f.chain_id, f.token))
  FROM in_force f GROUP BY f.underlying, f.at HAVING count(DISTINCT f.multiplier) > 1
UNION ALL
SELECT 'privileged_change', 'high', t.underlying, p.chain_id, p.token, p.block_number || ':' || p.log_index, NULL,
       jsonb_build_object('event', p.event, 'role', p.role, 'new_address', p.new_address,
                          'previous_address', p.previous_address, 'block_number', p.block_number,
                          'block_time', p.block_time, 'tx_hash', p.tx_hash, 'symbol', t.symbol)
  FROM privileged_events p CROSS JOIN n LEFT JOIN tokens t USING (chain_id, token)
 WHERE p.block_time > n.now - n.review
   AND NOT EXISTS (  -- the contract's own set-up: the first holder of each role, soon after its deployment
       SELECT 1 FROM privileged_events d
        WHERE d.chain_id = p.chain_id AND d.token = p.token AND d.event = 'OwnershipTransferred'
          AND d.previous_address = '0x0000000000000000000000000000000000000000'
          AND p.block_time BETWEEN d.block_time AND d.block_time + setting_interval('privileged_setup')
          AND NOT EXISTS (SELECT 1 FROM privileged_events e
                           WHERE e.chain_id = p.chain_id AND e.token = p.token AND e.role = p.role
                             AND (e.block_number, e.log_index) < (p.block_number, p.log_index)));
COMMENT ON VIEW backing_conditions IS 'The flags that should be open now, one row per condition (what `indexer reconcile` makes backing_flags match). Rules needing custody (R3..R8) apply to underlyings with at least one custody record; R9 and R10 to every token.';
COMMENT ON COLUMN backing_conditions.rule IS 'unbacked_supply: custody below supply at the attestation time (R3). stale_attestation: newest valid record older than stale_after (R4). ripcord: the newest record of the underlying is a ripcord (R5). unmatched_mint: mints older than settlement_window with no attestation at or after them that covers the supply (R6). multiplier_without_custody: a multiplier increase whose new supply custody did not hold at the activation time, and no later attestation covers (R8). multiplier_mismatch: xStocks of one underlying with different multipliers at the latest time every chain has indexed (R9). privileged_change: a privileged event within privileged_review of now (R10), except a contract''s own set-up: the deployment (OwnershipTransferred from the zero address) and the first assignment of each role within privileged_setup of it.';
COMMENT ON COLUMN backing_conditions.severity IS 'critical, high or warning (see backing_flags.severity).';
COMMENT ON COLUMN backing_conditions.underlying IS 'Underlying symbol (NULL for a factory''s privileged change).';
COMMENT ON COLUMN backing_conditions.chain_id IS 'Chain of the token concerned, NULL for a rule about the whole underlying.';
COMMENT ON COLUMN backing_conditions.token IS 'Token concerned, NULL for a rule about the whole underlying.';
COMMENT ON COLUMN backing_conditions.key IS 'Identifies the condition within its rule and token (see backing_flags.key).';
COMMENT ON COLUMN backing_conditions.shortfall IS 'Unbacked underlying shares where the rule measures them (R3, R8).';
COMMENT ON COLUMN backing_conditions.details IS 'Evidence, as stored in backing_flags.details.';

-- =============================================================================================
-- Analyst views
-- =============================================================================================
--
-- Questions analysts ask, answered by a view or a function each (docs/queries.md has them with
-- their SQL). Two rules make them fast on a large ledger:
-- - Filter by symbol (or chain_id and token): every grouping and window below partitions by
--   chain_id, token and symbol, so such a filter reaches the tables before any aggregation.
-- - Filter by day (UTC): transfer_log has an index per token and UTC day, which a filter on
--   transfers.day or daily_activity.day uses. holder_history reads per-day changes kept as the
--   ledger commits (holder_days); holders_at says what it costs.

CREATE INDEX IF NOT EXISTS transfer_log_day ON transfer_log (chain_id, token, ((block_time AT TIME ZONE 'UTC')::date));
COMMENT ON INDEX transfer_log_day IS 'Moves of one token by UTC day: daily_activity, transfers.day, block_at_time and holder_history_from use it. Equal keys are stored once (deduplicated): about 7 bytes a row.';
CREATE INDEX IF NOT EXISTS transfer_log_time_brin ON transfer_log USING brin (block_time) WITH (autosummarize = on);
COMMENT ON INDEX transfer_log_time_brin IS 'Ranges of pages by block_time, for a time filter without a token (or combined with another index): a few pages, almost free to maintain because rows arrive in time order.';

CREATE OR REPLACE FUNCTION utc_day(p_time timestamptz) RETURNS date
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (p_time AT TIME ZONE 'UTC')::date;
COMMENT ON FUNCTION utc_day(timestamptz) IS 'The UTC calendar day of a time: utc_day(block_time) is the day column of transfers and daily_activity (and uses their index).';

CREATE OR REPLACE VIEW daily_activity AS
SELECT t.chain_id, t.token, t.symbol, (l.block_time AT TIME ZONE 'UTC')::date AS day,
       count(*) FILTER (WHERE a.sent AND l.kind = 'mint') AS mints,
       coalesce(sum(l.amount_raw) FILTER (WHERE a.sent AND l.kind = 'mint'), 0) AS minted_raw,
       to_units(coalesce(sum(l.amount_raw) FILTER (WHERE a.sent AND l.kind = 'mint'), 0), t.decimals) AS minted,
       count(*) FILTER (WHERE a.sent AND l.kind = 'burn') AS burns,
       coalesce(sum(l.amount_raw) FILTER (WHERE a.sent AND l.kind = 'burn'), 0) AS burned_raw,
       to_units(coalesce(sum(l.amount_raw) FILTER (WHERE a.sent AND l.kind = 'burn'), 0), t.decimals) AS burned,
       count(*) FILTER (WHERE a.sent AND l.kind = 'transfer') AS transfers,
       coalesce(sum(l.amount_raw) FILTER (WHERE a.sent AND l.kind = 'transfer'), 0) AS transferred_raw,
       to_units(coalesce(sum(l.amount_raw) FILTER (WHERE a.sent AND l.kind = 'transfer'), 0), t.decimals)
           AS transferred,
       count(DISTINCT a.address COLLATE "C")
           FILTER (WHERE a.address <> '0x0000000000000000000000000000000000000000') AS active_addresses,
       min(l.block_number) AS first_block, max(l.block_number) AS last_block
  FROM transfer_log l
  JOIN tokens t ON t.chain_id = l.chain_id AND t.token = l.token
 CROSS JOIN LATERAL (VALUES (l.from_address, true), (l.to_address, false)) AS a(address, sent)
 GROUP BY t.chain_id, t.token, (l.block_time AT TIME ZONE 'UTC')::date, t.symbol;
COMMENT ON VIEW daily_activity IS 'Per token and UTC day with at least one move: mints, burns and transfers with their counts and volumes, and the addresses active. Volumes are Transfer values (token units at the multiplier of each move). Fast when filtered by symbol (or chain_id, token) and a day range: it reads only those days through the per-token day index; unfiltered it aggregates every transfer.';
COMMENT ON COLUMN daily_activity.chain_id IS 'EVM chain id.';
COMMENT ON COLUMN daily_activity.token IS 'Token contract address.';
COMMENT ON COLUMN daily_activity.symbol IS 'Token symbol, e.g. TSLAx.';
COMMENT ON COLUMN daily_activity.day IS 'UTC calendar day of the blocks counted (a day without any move of the token has no row).';
COMMENT ON COLUMN daily_activity.mints IS 'Number of mints (Transfer from the zero address).';
COMMENT ON COLUMN daily_activity.minted_raw IS 'Sum of the minted amounts, base units.';
COMMENT ON COLUMN daily_activity.minted IS 'minted_raw in token units (exact decimal).';
COMMENT ON COLUMN daily_activity.burns IS 'Number of burns (Transfer to the zero address): the last step of a redemption.';
COMMENT ON COLUMN daily_activity.burned_raw IS 'Sum of the burned amounts, base units.';
COMMENT ON COLUMN daily_activity.burned IS 'burned_raw in token units (exact decimal).';
COMMENT ON COLUMN daily_activity.transfers IS 'Number of transfers between two non-zero addresses (self transfers and zero-value transfers included).';
COMMENT ON COLUMN daily_activity.transferred_raw IS 'Sum of the transferred amounts (transfers only, not mints or burns), base units.';
COMMENT ON COLUMN daily_activity.transferred IS 'transferred_raw in token units (exact decimal).';
COMMENT ON COLUMN daily_activity.active_addresses IS 'Distinct non-zero addresses that sent or received the token that day (mint receivers and burners included).';
COMMENT ON COLUMN daily_activity.first_block IS 'First block of the day with a move of the token.';
COMMENT ON COLUMN daily_activity.last_block IS 'Last block of the day with a move of the token.';

CREATE OR REPLACE FUNCTION holder_history_from(p_chain_id bigint, p_token text, p_from date)
    RETURNS TABLE (day date, holder_count bigint, new_holders bigint, joined bigint, exited bigint,
                   total_shares numeric, multiplier numeric, total_supply_raw numeric, total_supply numeric)
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    tok tokens%ROWTYPE;
    holders_now bigint;
    first_day date;
    last_day date;
BEGIN
    SELECT * INTO tok FROM tokens t WHERE t.chain_id = p_chain_id AND t.token = lower(p_token);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'token % is not indexed on chain %', p_token, p_chain_id;
    END IF;
    SELECT coalesce(max(h.holders), 0) INTO holders_now FROM holder_counts h  -- shares > 0, kept by triggers
     WHERE h.chain_id = tok.chain_id AND h.token = tok.token;
    SELECT (k.block_time AT TIME ZONE 'UTC')::date INTO last_day FROM cursors k WHERE k.chain_id = tok.chain_id;
    SELECT min(d.day) INTO first_day FROM holder_days d WHERE d.chain_id = tok.chain_id AND d.token = tok.token;
    first_day := greatest(first_day, p_from);
    -- Walk back from the current ledger through the per-day changes the batches kept
    -- (holder_days): a few hundred rows a year, whatever the number of moves.
    RETURN QUERY
    WITH totals AS (
        SELECT g.day::date AS day,
               (holders_now - coalesce(sum(c.joined - c.exited) OVER later, 0))::bigint AS holder_count,
               coalesce(c.new_holders, 0) AS new_holders, coalesce(c.joined, 0) AS joined,
               coalesce(c.exited, 0) AS exited, tok.total_shares - coalesce(sum(c.net_shares) OVER later, 0) AS shares
          FROM generate_series(first_day::timestamp, last_day::timestamp, interval '1 day') AS g(day)
          LEFT JOIN holder_days c ON c.chain_id = tok.chain_id AND c.token = tok.token AND c.day = g.day::date
        WINDOW later AS (ORDER BY g.day DESC ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
    )
    SELECT o.day, o.holder_count, o.new_holders, o.joined, o.exited, o.shares, o.m,
           apply_multiplier(o.shares, o.m), to_units(apply_multiplier(o.shares, o.m), tok.decimals)
      FROM (SELECT x.*, multiplier_at_time(tok.chain_id, tok.token,
                                           (x.day + 1)::timestamp AT TIME ZONE 'UTC' - interval '1 microsecond') AS m
              FROM totals x) o
     ORDER BY o.day;
END $$;
COMMENT ON FUNCTION holder_history_from(bigint, text, date) IS 'holder_history of one token from day p_from (NULL: its first move) to the indexed block, one row per UTC day. Reads the per-day changes the ledger keeps (holder_days), walking back from the current ledger: its cost is the number of days, not of moves.';

CREATE OR REPLACE VIEW holder_history AS
SELECT t.chain_id, t.token, t.symbol, h.day, h.holder_count, h.new_holders, h.joined, h.exited, h.total_shares,
       h.multiplier, h.total_supply_raw, h.total_supply
  FROM tokens t
 CROSS JOIN LATERAL holder_history_from(t.chain_id, t.token, NULL) AS h;
COMMENT ON VIEW holder_history IS 'Per token and UTC day, from the token''s first move to the indexed block: holders and supply at the end of the day (days without moves included). Read from the per-day changes kept as the ledger commits (holder_days): a few hundred rows per token and year, whatever the number of moves. Filter by symbol (or chain_id, token); holder_history_from(chain_id, token, first_day) gives the days from first_day on.';
COMMENT ON COLUMN holder_history.chain_id IS 'EVM chain id.';
COMMENT ON COLUMN holder_history.token IS 'Token contract address.';
COMMENT ON COLUMN holder_history.symbol IS 'Token symbol, e.g. TSLAx.';
COMMENT ON COLUMN holder_history.day IS 'UTC calendar day; the figures are as of its last indexed block.';
COMMENT ON COLUMN holder_history.holder_count IS 'Addresses holding shares > 0 at the end of the day. Unlike the holders view, an address left with dust (shares worth less than one base unit after a multiplier below 1.0) still counts here.';
COMMENT ON COLUMN holder_history.new_holders IS 'Addresses that received the token that day for the first time ever (shares > 0).';
COMMENT ON COLUMN holder_history.joined IS 'Addresses whose shares went from 0 to > 0 over the day (new and returning holders).';
COMMENT ON COLUMN holder_history.exited IS 'Addresses whose shares went from > 0 to 0 over the day.';
COMMENT ON COLUMN holder_history.total_shares IS 'Shares minted minus burned up to the end of the day.';
COMMENT ON COLUMN holder_history.multiplier IS 'Multiplier in force at the end of the day (1e18 = 1.0), silent activations included.';
COMMENT ON COLUMN holder_history.total_supply_raw IS 'floor(total_shares * multiplier / 1e18), base units: totalSupply() at the last block of the day.';
COMMENT ON COLUMN holder_history.total_supply IS 'total_supply_raw in token units (exact decimal).';

-- Ranked per token in a lateral subquery: a window without PARTITION BY stops at the first row
-- past `rank <= n` (its run condition), so share_balances_rank is read from the largest holding
-- down to the rank asked and no further, and balances are computed for the rows returned only.
-- The LIMIT of a value unknown when planning (NULL: no limit) has the planner cost the holdings
-- for their first rows, so it takes that ordered scan over sorting all of them.
CREATE OR REPLACE VIEW top_holders AS
SELECT t.chain_id, t.token, t.symbol, r.rank, r.holder, r.shares,
       apply_multiplier(r.shares, t.multiplier) AS balance_raw,
       to_units(apply_multiplier(r.shares, t.multiplier), t.decimals) AS balance,
       round(r.shares / nullif(t.total_shares, 0), 12) AS share_of_supply,
       r.updated_block
  FROM tokens t
 CROSS JOIN LATERAL (
       SELECT b.holder, b.shares, b.updated_block, rank() OVER (ORDER BY b.shares DESC) AS rank
         FROM (SELECT h.holder, h.shares, h.updated_block FROM share_balances h
                WHERE h.chain_id = t.chain_id AND h.token = t.token
                  AND h.shares > 0 AND h.shares >= holder_threshold(t.multiplier)
                ORDER BY h.shares DESC LIMIT (SELECT NULL::bigint)) b) r;
COMMENT ON VIEW top_holders IS 'Current holders (balance > 0) ranked within their token by balance, at the indexed block. Filter by symbol and rank: WHERE symbol = ''TSLAx'' AND rank <= 20.';
COMMENT ON COLUMN top_holders.chain_id IS 'EVM chain id.';
COMMENT ON COLUMN top_holders.token IS 'Token contract address.';
COMMENT ON COLUMN top_holders.symbol IS 'Token symbol, e.g. TSLAx.';
COMMENT ON COLUMN top_holders.rank IS '1 for the largest holder of the token on its chain; equal balances share a rank.';
COMMENT ON COLUMN top_holders.holder IS 'Holder address.';
COMMENT ON COLUMN top_holders.shares IS 'Internal shares held.';
COMMENT ON COLUMN top_holders.balance_raw IS 'Balance in base units, equal to balanceOf at the indexed block.';
COMMENT ON COLUMN top_holders.balance IS 'balance_raw in token units (exact decimal).';
COMMENT ON COLUMN top_holders.share_of_supply IS 'Fraction of the token''s supply on this chain held (0 to 1, 12 decimals): shares / total shares.';
COMMENT ON COLUMN top_holders.updated_block IS 'Last block in which this holder''s shares moved.';

CREATE OR REPLACE VIEW multiplier_history AS
SELECT m.chain_id, m.token, t.symbol, m.block_number,
       CASE WHEN m.source <> 'initial' THEN m.block_time END AS activated_at,
       CASE WHEN m.source <> 'initial' THEN coalesce(lag(m.multiplier) OVER w, 1000000000000000000) END
           AS previous_multiplier,
       m.multiplier,
       CASE WHEN m.source <> 'initial'
            THEN trim_scale(round(m.multiplier / coalesce(lag(m.multiplier) OVER w, 1000000000000000000), 18)) END
           AS ratio,
       m.source,
       s.block_number AS scheduled_block, s.block_time AS scheduled_at
  FROM multiplier_changes m
  JOIN tokens t USING (chain_id, token)
  LEFT JOIN LATERAL (
        SELECT e.block_number, e.block_time FROM token_events e
         WHERE e.chain_id = m.chain_id AND e.token = m.token AND e.event = 'MultiplierScheduled'
           AND e.block_number <= m.block_number AND e.args ->> 'newMultiplier' = m.multiplier::text
           AND (e.args ->> 'activationTime')::numeric <= extract(epoch FROM m.block_time)
         ORDER BY e.block_number DESC, e.log_index DESC LIMIT 1) s ON m.source <> 'initial'
WINDOW w AS (PARTITION BY m.chain_id, m.token, t.symbol ORDER BY m.block_number);
COMMENT ON VIEW multiplier_history IS 'Every change of a token''s multiplier (splits, reverse splits, reinvested dividends, fee decay), at the first block where the chain applies it, and how the indexer learned it. Balances and supply jump there with no Transfer.';
COMMENT ON COLUMN multiplier_history.chain_id IS 'EVM chain id.';
COMMENT ON COLUMN multiplier_history.token IS 'Token contract address.';
COMMENT ON COLUMN multiplier_history.symbol IS 'Token symbol, e.g. TSLAx.';
COMMENT ON COLUMN multiplier_history.block_number IS 'First block in which the new multiplier is in force (for source initial: the block indexing began after).';
COMMENT ON COLUMN multiplier_history.activated_at IS 'Timestamp of that block: when balances changed (UTC); NULL for source initial.';
COMMENT ON COLUMN multiplier_history.previous_multiplier IS 'Multiplier before the change (1e18 = 1.0); NULL for source initial.';
COMMENT ON COLUMN multiplier_history.multiplier IS 'Multiplier from this block on (1e18 = 1.0).';
COMMENT ON COLUMN multiplier_history.ratio IS 'multiplier / previous_multiplier: 2 for a 2:1 split, 0.5 for a 1:2 reverse split, slightly below 1 for a fee period.';
COMMENT ON COLUMN multiplier_history.source IS 'How the change was learned: event (a MultiplierUpdated in that block), observed (the chain''s getCurrentMultiplier changed with no event there: a silent scheduled activation or fee decay), initial (the value in force when indexing began).';
COMMENT ON COLUMN multiplier_history.scheduled_block IS 'Block of the MultiplierScheduled event that announced this value, if one was emitted; NULL otherwise (immediate updates, fee decay, older contract versions).';
COMMENT ON COLUMN multiplier_history.scheduled_at IS 'Timestamp of scheduled_block.';

CREATE OR REPLACE VIEW indexer_progress AS
SELECT c.chain_id, c.name AS chain, k.block_number AS indexed_block, k.block_time AS indexed_block_time,
       k.head_number AS head_block, k.head_number - k.block_number AS lag_blocks,
       now() - k.block_time AS indexed_age, k.head_seen_at, k.updated_at,
       (SELECT count(*) FROM tokens t WHERE t.chain_id = c.chain_id) AS tokens
  FROM chains c
  LEFT JOIN cursors k USING (chain_id);
COMMENT ON VIEW indexer_progress IS 'Per chain: how far the index goes and how far behind the chain head it is. Every other view is exact as of indexed_block.';
COMMENT ON COLUMN indexer_progress.chain_id IS 'EVM chain id.';
COMMENT ON COLUMN indexer_progress.chain IS 'Chain name from the config.';
COMMENT ON COLUMN indexer_progress.indexed_block IS 'Last block whose events are all stored; NULL before the first batch.';
COMMENT ON COLUMN indexer_progress.indexed_block_time IS 'Timestamp of indexed_block (UTC).';
COMMENT ON COLUMN indexer_progress.head_block IS 'Chain head as last seen by the running daemon (updated whenever the head moves) or at the end of a backfill; NULL until one of them has run.';
COMMENT ON COLUMN indexer_progress.lag_blocks IS 'head_block - indexed_block: blocks not indexed yet (confirmations included).';
COMMENT ON COLUMN indexer_progress.indexed_age IS 'Wall-clock time since indexed_block was produced: how stale the views are.';
COMMENT ON COLUMN indexer_progress.head_seen_at IS 'Wall-clock time head_block was seen.';
COMMENT ON COLUMN indexer_progress.updated_at IS 'Wall-clock time the index last moved.';
COMMENT ON COLUMN indexer_progress.tokens IS 'Tokens followed on the chain.';

-- ---------------------------------------------------------------------------------------------
-- Analyst views: time travel by block
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION holders_at(p_chain_id bigint, p_token text, p_block bigint)
    RETURNS TABLE (holder text, shares numeric, balance_raw numeric, balance numeric)
    LANGUAGE plpgsql STABLE
    -- A few hundred thousand moves aggregated by holder: in memory, and too short a query for JIT.
    SET work_mem = '64MB' SET jit = off AS $$
#variable_conflict use_column
DECLARE
    tok tokens%ROWTYPE;
    m numeric;
    anchor bigint;
    src text := 'start';
    point bigint;
BEGIN
    SELECT * INTO tok FROM tokens t WHERE t.chain_id = p_chain_id AND t.token = lower(p_token);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'token % is not indexed on chain %', p_token, p_chain_id;
    END IF;
    IF p_block > tok.synced_block THEN
        RAISE EXCEPTION 'block % is past the indexed block % of % on chain %',
            p_block, tok.synced_block, tok.symbol, p_chain_id;
    END IF;
    m := multiplier_at(p_chain_id, tok.token, p_block);
    -- Start from the nearest known ledger: none before the token's start, a checkpoint, or the
    -- current one; then apply the moves between it and p_block (forward or backward).
    anchor := least(tok.start_block - 1, p_block);
    SELECT c.block_number INTO point FROM holder_checkpoints c
     WHERE c.chain_id = p_chain_id AND c.token = tok.token ORDER BY abs(c.block_number - p_block) LIMIT 1;
    IF point IS NOT NULL AND abs(point - p_block) < p_block - anchor THEN
        anchor := point;
        src := 'checkpoint';
    END IF;
    IF tok.synced_block - p_block < abs(anchor - p_block) THEN
        anchor := tok.synced_block;
        src := 'ledger';
    END IF;
    RETURN QUERY
    WITH moved AS (
        SELECT a.holder, sum(a.delta) AS delta
          FROM transfer_log l
         CROSS JOIN LATERAL (VALUES (l.to_address, l.shares), (l.from_address, -l.shares)) AS a(holder, delta)
         WHERE l.chain_id = p_chain_id AND l.token = tok.token
           AND l.block_number > least(anchor, p_block) AND l.block_number <= greatest(anchor, p_block)
           AND a.holder <> '0x0000000000000000000000000000000000000000'
         GROUP BY a.holder
    ), known AS (
        SELECT c.holder, c.shares FROM checkpoint_shares c
         WHERE src = 'checkpoint' AND c.chain_id = p_chain_id AND c.token = tok.token AND c.block_number = anchor
        UNION ALL
        SELECT b.holder, b.shares FROM share_balances b
         WHERE src = 'ledger' AND b.chain_id = p_chain_id AND b.token = tok.token AND b.shares <> 0
    )
    SELECT h.holder, h.shares, apply_multiplier(h.shares, m), to_units(apply_multiplier(h.shares, m), tok.decimals)
      FROM (SELECT coalesce(k.holder, x.holder) AS holder,
                   coalesce(k.shares, 0) + coalesce(CASE WHEN anchor < p_block THEN x.delta ELSE -x.delta END, 0) AS shares
              FROM known k FULL JOIN moved x ON x.holder = k.holder) h
     WHERE h.shares > 0 AND h.shares >= holder_threshold(m);
END $$;
COMMENT ON FUNCTION holders_at(bigint, text, bigint) IS 'Holders of a token at the end of block p_block: (holder, shares, balance_raw, balance) for every address with balance > 0 (dust shares worth less than one base unit left out); balance_raw equals balanceOf(holder) at that block, silent multiplier activations included. Starts from the nearest of the token''s start, a checkpoint (holder_checkpoints) and the current ledger, and reads only the moves between it and p_block. Raises an error past the indexed block. Order by balance_raw DESC for a ranking.';

CREATE OR REPLACE FUNCTION block_at_time(p_chain_id bigint, p_token text, p_at timestamptz) RETURNS bigint
    LANGUAGE sql STABLE AS $$
    SELECT greatest(
        (SELECT l.block_number FROM transfer_log l
          WHERE l.chain_id = p_chain_id AND l.token = lower(p_token)
            AND (l.block_time AT TIME ZONE 'UTC')::date <= (p_at AT TIME ZONE 'UTC')::date AND l.block_time <= p_at
          ORDER BY (l.block_time AT TIME ZONE 'UTC')::date DESC, l.block_number DESC LIMIT 1),
        (SELECT m.block_number FROM multiplier_changes m
          WHERE m.chain_id = p_chain_id AND m.token = lower(p_token) AND m.block_time <= p_at AND m.source <> 'initial'
          ORDER BY m.block_number DESC LIMIT 1))
$$;
COMMENT ON FUNCTION block_at_time(bigint, text, timestamptz) IS 'The last block at or before time p_at in which the token''s holders or multiplier changed: the token''s state at p_at is its state at the end of that block, so holders_at / balance_at / supply_at there answer "as of p_at". NULL before its first move.';

-- ---------------------------------------------------------------------------------------------
-- Analyst views: the analyst role
-- ---------------------------------------------------------------------------------------------
--
-- `analyst` (NOLOGIN) may read the analyst surface and nothing else: SELECT on the views and on
-- the custody tables analysts read, EXECUTE on the functions. It cannot write, and it cannot
-- read the ledger tables (transfer_log, share_balances, tokens, cursors, ...) directly.
-- Operators give it to real logins: CREATE ROLE alice LOGIN IN ROLE analyst.
--
-- A view reads its tables with its owner's rights, but a function reads them with its caller's:
-- the functions that read tables therefore run as their owner (SECURITY DEFINER, with a fixed
-- search_path so that no caller's objects can stand in for ours), and only analyst and
-- pg_read_all_data may call them. The role is cluster-wide, so it is created once, by whichever
-- database migrates first; without CREATEROLE, migrate warns and skips this part.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'analyst') THEN
        BEGIN
            CREATE ROLE analyst NOLOGIN;
            COMMENT ON ROLE analyst IS 'Reads the xstock-indexer analyst views and functions, nothing else; grant it to logins.';
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by the migration of another database
            WHEN insufficient_privilege THEN
                RAISE WARNING 'role analyst not created: % (a superuser can: CREATE ROLE analyst NOLOGIN, then migrate again)', SQLERRM;
        END;
    END IF;
END $$;

DO $$
DECLARE
    definer_functions text[] := ARRAY[
        'multiplier_at(bigint, text, bigint)', 'shares_at(bigint, text, text, bigint)',
        'balance_at(bigint, text, text, bigint)', 'supply_at(bigint, text, bigint)',
        'holders_at(bigint, text, bigint)', 'block_at_time(bigint, text, timestamptz)',
        'holder_history_from(bigint, text, date)',
        'indexed_now()', 'setting_interval(text)', 'multiplier_at_time(bigint, text, timestamptz)',
        'supply_at_time(bigint, text, timestamptz)', 'underlying_supply_at(text, timestamptz)',
        'custody_position(text, timestamptz)', 'custody_covers(text, timestamptz)', 'last_covered_at(text)',
        'custody_ripcord_at(text, timestamptz)', 'custody_coverage_horizon(text)', 'custody_coverage_known(text)',
        'custody_covered_between(text, timestamptz, timestamptz, timestamptz)',
        'backing_eval(text, timestamptz, timestamptz)', 'backing_at(text, timestamptz)'];
    pure_functions text[] := ARRAY['to_units(numeric, integer)', 'apply_multiplier(numeric, numeric)',
                                   'utc_day(timestamptz)', 'holder_threshold(numeric)'];
    relations text[] := ARRAY[
        'transfers', 'holders', 'token_supply', 'daily_activity', 'holder_history', 'top_holders',
        'multiplier_history', 'indexer_progress', 'backing', 'backing_conditions',
        'custody_attestations', 'backing_flags', 'backing_flag_notes', 'privileged_events', 'schema_version'];
    f text;
    r text;
BEGIN
    FOREACH f IN ARRAY definer_functions LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp', f, current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO pg_read_all_data', f);
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'analyst') THEN
        RETURN;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO analyst', current_schema());
    IF has_schema_privilege('public', current_schema(), 'CREATE') THEN
        RAISE WARNING 'every role, analyst included, may create objects in schema %: REVOKE CREATE ON SCHEMA % FROM PUBLIC (the default since PostgreSQL 15)', current_schema(), current_schema();
    END IF;
    FOREACH f IN ARRAY definer_functions || pure_functions LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO analyst', f);
    END LOOP;
    FOREACH r IN ARRAY relations LOOP
        EXECUTE format('GRANT SELECT ON %I TO analyst', r);
    END LOOP;
END $$;
