-- xstock-indexer: the database, read top to bottom.
--
-- Applied by `indexer migrate` (and at the start of `indexer run`) inside one transaction under
-- an advisory lock; every statement is idempotent, so applying it twice changes nothing.
--
-- Conventions: addresses and hashes are lowercase 0x hex text. Token amounts are numeric(78,0)
-- in base units (the uint256 the contract stores); a decimal-adjusted column beside them is
-- exact (base units times 10^-decimals, no rounding). A multiplier is numeric where
-- 1000000000000000000 (1e18) means 1.0.
--
-- Internal tables (the ledger the indexer writes) come first, then the analyst surface: the
-- views and functions documented in README.md.

SELECT pg_advisory_xact_lock(hashtext('xstock-indexer:migrate'));

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
    block_time    timestamptz NOT NULL,
    PRIMARY KEY (chain_id, block_number)
);
COMMENT ON TABLE recent_blocks IS 'Hashes of recently indexed blocks (at least max_reorg_depth of them), used to find the common ancestor after a reorg.';

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
COMMENT ON TABLE transfer_log IS 'Storage behind the transfers view: one row per Transfer (+TransferShares) pair.';

CREATE TABLE IF NOT EXISTS share_balances (
    chain_id       bigint NOT NULL,
    token          text NOT NULL,
    holder         text NOT NULL,
    shares         numeric(78,0) NOT NULL,
    updated_block  bigint NOT NULL,
    PRIMARY KEY (chain_id, token, holder)
);
COMMENT ON TABLE share_balances IS 'The share ledger: shares per holder as of the token''s synced_block, folded from TransferShares (or Transfer for a plain ERC-20). Zero rows are kept so verify can check every address ever seen.';

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
       to_units(l.amount_raw, t.decimals) AS amount
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

CREATE OR REPLACE VIEW holders AS
SELECT b.chain_id, b.token, t.symbol, b.holder, b.shares,
       apply_multiplier(b.shares, t.multiplier) AS balance_raw,
       to_units(apply_multiplier(b.shares, t.multiplier), t.decimals) AS balance,
       b.updated_block
FROM share_balances b
JOIN tokens t USING (chain_id, token)
WHERE b.shares > 0;
COMMENT ON VIEW holders IS 'Current holders (shares > 0) at the indexed block. balance_raw equals balanceOf(holder) there.';
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
       (SELECT count(*) FROM share_balances b
         WHERE b.chain_id = t.chain_id AND b.token = t.token AND b.shares > 0) AS holder_count,
       t.minted_raw, t.burned_raw, t.synced_block AS indexed_block,
       t.kind, t.name
FROM tokens t;
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
COMMENT ON COLUMN token_supply.holder_count IS 'Addresses with shares > 0.';
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
