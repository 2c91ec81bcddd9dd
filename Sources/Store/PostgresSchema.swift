import Foundation

/// The PostgreSQL schema, one migration per version; `switchboard_schema` records which ran, and an advisory lock
/// keeps nodes that start together from running one twice.
///
/// Two functions keep a batch of transitions at four statements in two round trips (BEGIN with the load, the commit
/// with COMMIT): `switchboard_load_batch` (migration 4, which replaced migration 1's `switchboard_load`) takes the
/// users' locks and returns every call the inputs need; `switchboard_commit` writes the changed calls, their
/// timeline lines and the events, and notifies the other nodes. Every value reaches them as a bound parameter.
enum PostgresSchema {
    /// `pg_advisory_lock` key of migrations.
    static let migrationLock: Int64 = 0x5357_4254_4D49_4752
    /// The `LISTEN` channel.
    static let channel = "switchboard_events"
    /// The SQLSTATE of a cached commit that wrote nothing: other event ids came first, or a call it creates exists.
    static let stale = "SB409"

    /// The statements of a migration: split at each `;` outside a `$$` function body.
    static func statements(_ sql: String) -> [String] {
        var statements: [String] = []
        var current = ""
        var inBody = false
        var rest = Substring(sql)
        while let character = rest.first {
            if rest.hasPrefix("$$") {
                inBody.toggle()
                current += "$$"
                rest = rest.dropFirst(2)
                continue
            }
            rest = rest.dropFirst()
            if character == ";" && !inBody {
                let statement = current.trimmingCharacters(in: .whitespacesAndNewlines)
                if !statement.isEmpty { statements.append(statement) }
                current = ""
            } else {
                current.append(character)
            }
        }
        let last = current.trimmingCharacters(in: .whitespacesAndNewlines)
        if !last.isEmpty { statements.append(last) }
        return statements
    }

    static let migrations: [(version: Int, sql: String)] = [
        (
            1,
            """
            CREATE TABLE calls (
                id text PRIMARY KEY,
                caller text NOT NULL,
                caller_device text NOT NULL,
                callee text NOT NULL,
                state text NOT NULL,
                end_reason text,
                created_at double precision NOT NULL,
                answered_at double precision,
                ended_at double precision,
                answered_by text,
                ringing_devices text NOT NULL,
                ring_deadline double precision,
                offer text,
                timeline_length integer NOT NULL,
                media text NOT NULL,
                failure text
            );
            CREATE INDEX calls_by_caller ON calls (caller, created_at, id);
            CREATE INDEX calls_by_callee ON calls (callee, created_at, id);
            CREATE INDEX calls_by_time ON calls (created_at, id);
            CREATE INDEX calls_live_by_caller ON calls (caller) WHERE state IN ('inviting', 'ringing', 'active');
            CREATE INDEX calls_live_by_callee ON calls (callee) WHERE state IN ('inviting', 'ringing', 'active');
            CREATE INDEX calls_pending_deadline ON calls (ring_deadline) WHERE state IN ('inviting', 'ringing');
            CREATE INDEX calls_ended ON calls (ended_at) WHERE state = 'ended';
            CREATE TABLE timeline (
                call_id text NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
                seq integer NOT NULL,
                at double precision NOT NULL,
                event text NOT NULL,
                actor text NOT NULL,
                device text,
                reason text,
                PRIMARY KEY (call_id, seq)
            );
            CREATE TABLE events (
                id bigserial PRIMARY KEY,
                at double precision NOT NULL,
                recipient text NOT NULL,
                devices text NOT NULL,
                name text NOT NULL,
                call_id text NOT NULL,
                data bytea NOT NULL
            );
            CREATE INDEX events_by_recipient ON events (recipient, id);
            CREATE INDEX events_by_time ON events (at);
            CREATE TABLE meta (key text PRIMARY KEY, value bigint NOT NULL);
            INSERT INTO meta (key, value) VALUES ('pruned_through', 0);

            CREATE FUNCTION switchboard_load(p_id text, p_users text[], p_parties boolean, p_due double precision)
            RETURNS SETOF jsonb LANGUAGE plpgsql AS $$
            DECLARE
                keys text[] := p_users;
                h bigint;
            BEGIN
                IF p_id IS NOT NULL THEN
                    keys := keys || (SELECT ARRAY[caller, callee] FROM calls WHERE id = p_id);
                END IF;
                IF p_due IS NOT NULL THEN
                    keys := keys || ARRAY(
                        SELECT unnest(ARRAY[caller, callee]) FROM calls
                        WHERE state IN ('inviting', 'ringing') AND ring_deadline <= p_due);
                END IF;
                -- Every transaction takes its users' locks in one order: no two can deadlock.
                FOR h IN SELECT DISTINCT hashtextextended(k, 0) FROM unnest(keys) AS k WHERE k IS NOT NULL ORDER BY 1
                LOOP
                    PERFORM pg_advisory_xact_lock(h);
                END LOOP;
                -- One indexed read per part (the partial indexes of live calls): a user's history costs nothing here.
                RETURN QUERY
                    SELECT to_jsonb(c) FROM calls AS c WHERE c.id = p_id
                    UNION SELECT to_jsonb(c) FROM calls AS c
                        WHERE p_parties AND c.state IN ('inviting', 'ringing', 'active') AND c.caller = ANY (keys)
                    UNION SELECT to_jsonb(c) FROM calls AS c
                        WHERE p_parties AND c.state IN ('inviting', 'ringing', 'active') AND c.callee = ANY (keys)
                    UNION SELECT to_jsonb(c) FROM calls AS c
                        WHERE p_due IS NOT NULL AND c.state IN ('inviting', 'ringing') AND c.ring_deadline <= p_due;
            END $$;

            CREATE FUNCTION switchboard_commit(p_calls jsonb, p_timeline jsonb, p_events jsonb, p_at double precision)
            RETURNS SETOF bigint LANGUAGE plpgsql AS $$
            DECLARE
                e jsonb;
                new_id bigint;
                ids bigint[] := '{}';
                payload text;
            BEGIN
                INSERT INTO calls SELECT * FROM jsonb_populate_recordset(NULL::calls, p_calls)
                ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, end_reason = EXCLUDED.end_reason,
                    answered_at = EXCLUDED.answered_at, ended_at = EXCLUDED.ended_at,
                    answered_by = EXCLUDED.answered_by, ringing_devices = EXCLUDED.ringing_devices,
                    ring_deadline = EXCLUDED.ring_deadline, offer = EXCLUDED.offer,
                    timeline_length = EXCLUDED.timeline_length, media = EXCLUDED.media, failure = EXCLUDED.failure;
                INSERT INTO timeline SELECT * FROM jsonb_populate_recordset(NULL::timeline, p_timeline);
                IF jsonb_array_length(p_events) = 0 THEN
                    RETURN;
                END IF;
                PERFORM pg_advisory_xact_lock(1398227540, 1);
                FOR e IN SELECT value FROM jsonb_array_elements(p_events) WITH ORDINALITY ORDER BY ordinality LOOP
                    INSERT INTO events (at, recipient, devices, name, call_id, data)
                    VALUES (p_at, e->>'recipient', e->>'devices', e->>'name', e->>'call_id', decode(e->>'data', 'base64'))
                    RETURNING id INTO new_id;
                    ids := ids || new_id;
                END LOOP;
                -- Small batches travel whole; a large one is read from the table by its ids.
                payload := jsonb_build_object('ids', to_jsonb(ids), 'at', p_at, 'events', p_events)::text;
                IF octet_length(payload) > 7900 THEN
                    payload := jsonb_build_object('ids', to_jsonb(ids), 'at', p_at)::text;
                END IF;
                PERFORM pg_notify('switchboard_events', payload);
                RETURN QUERY SELECT unnest(ids);
            END $$;
            """
        ),
        (
            2,
            """
            CREATE TABLE stream_tickets (hash text PRIMARY KEY, payload bytea NOT NULL, expires double precision NOT NULL);
            CREATE INDEX stream_tickets_by_expiry ON stream_tickets (expires);
            """
        ),
        (
            3,
            """
            ALTER TABLE calls ADD COLUMN media_node text;
            """
        ),
        (
            4,
            """
            -- The calls a batch of inputs needs (group commit: one transaction for the transitions a node has
            -- queued): the calls p_ids names, with their parties' locks, the pending and active calls of
            -- p_users and of the parties of p_party_ids (the inputs that keep busy, glare and one active call),
            -- and the pending calls due at p_due. (No semicolon in comments: the migration is split at them.)
            CREATE FUNCTION switchboard_load_batch(
                p_ids text[], p_party_ids text[], p_users text[], p_due double precision)
            RETURNS SETOF jsonb LANGUAGE plpgsql AS $$
            DECLARE
                keys text[] := p_users;
                party_keys text[];
                h bigint;
            BEGIN
                keys := keys || ARRAY(SELECT unnest(ARRAY[caller, callee]) FROM calls WHERE id = ANY (p_ids));
                IF p_due IS NOT NULL THEN
                    keys := keys || ARRAY(
                        SELECT unnest(ARRAY[caller, callee]) FROM calls
                        WHERE state IN ('inviting', 'ringing') AND ring_deadline <= p_due);
                END IF;
                -- Every transaction takes its users' locks in one order: no two can deadlock.
                FOR h IN SELECT DISTINCT hashtextextended(k, 0) FROM unnest(keys) AS k WHERE k IS NOT NULL ORDER BY 1
                LOOP
                    PERFORM pg_advisory_xact_lock(h);
                END LOOP;
                party_keys := p_users
                    || ARRAY(SELECT unnest(ARRAY[caller, callee]) FROM calls WHERE id = ANY (p_party_ids));
                RETURN QUERY
                    SELECT to_jsonb(c) FROM calls AS c WHERE c.id = ANY (p_ids)
                    UNION SELECT to_jsonb(c) FROM calls AS c
                        WHERE c.state IN ('inviting', 'ringing', 'active') AND c.caller = ANY (party_keys)
                    UNION SELECT to_jsonb(c) FROM calls AS c
                        WHERE c.state IN ('inviting', 'ringing', 'active') AND c.callee = ANY (party_keys)
                    UNION SELECT to_jsonb(c) FROM calls AS c
                        WHERE p_due IS NOT NULL AND c.state IN ('inviting', 'ringing') AND c.ring_deadline <= p_due;
            END $$;
            DROP FUNCTION switchboard_load(text, text[], boolean, double precision);
            """
        ),
        (
            5,
            """
            -- Every statement in the two functions reads by an index. PL/pgSQL caches a plan per session, and one
            -- made while the tables were nearly empty chose sequential scans and kept them as the tables grew
            -- (until an autovacuum ANALYZE). Without sequential scans the cached plans stay right at any size,
            -- so the store's sessions need no custom plan per execution (force_custom_plan cost 0.5 ms per
            -- load and 0.4 ms per commit in planning). No JIT: a plan priced with a scan disabled would look
            -- costly enough to compile, and these statements run for tens of microseconds.
            ALTER FUNCTION switchboard_load_batch(text[], text[], text[], double precision)
                SET enable_seqscan = off SET jit = off;
            ALTER FUNCTION switchboard_commit(jsonb, jsonb, jsonb, double precision)
                SET enable_seqscan = off SET jit = off;
            """
        ),
        (
            6,
            """
            -- Commits name their node (its sessions' application_name), so a node tells its own batches from
            -- others'. switchboard_commit_checked is switchboard_commit that, given p_epoch, commits only if no event
            -- id was handed out after it (every change to a call comes with events, so nothing a node's cache of
            -- calls decided on has changed since), and raises SB409 otherwise. It takes the ordering lock after
            -- writing the rows, as every commit does, so no two commits can wait on each other's rows and lock.
            -- Older nodes keep calling switchboard_commit, now a wrapper, and read the notifications' extra key.
            CREATE FUNCTION switchboard_commit_checked(
                p_epoch bigint, p_calls jsonb, p_timeline jsonb, p_events jsonb, p_at double precision)
            RETURNS SETOF bigint LANGUAGE plpgsql SET enable_seqscan = off SET jit = off AS $$
            DECLARE
                e jsonb;
                new_id bigint;
                ids bigint[] := '{}';
                node text := current_setting('application_name');
                v_head bigint;
                payload text;
            BEGIN
                INSERT INTO calls SELECT * FROM jsonb_populate_recordset(NULL::calls, p_calls)
                ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, end_reason = EXCLUDED.end_reason,
                    answered_at = EXCLUDED.answered_at, ended_at = EXCLUDED.ended_at,
                    answered_by = EXCLUDED.answered_by, ringing_devices = EXCLUDED.ringing_devices,
                    ring_deadline = EXCLUDED.ring_deadline, offer = EXCLUDED.offer,
                    timeline_length = EXCLUDED.timeline_length, media = EXCLUDED.media, failure = EXCLUDED.failure,
                    media_node = EXCLUDED.media_node;
                INSERT INTO timeline SELECT * FROM jsonb_populate_recordset(NULL::timeline, p_timeline);
                IF jsonb_array_length(p_events) = 0 THEN
                    RETURN;
                END IF;
                PERFORM pg_advisory_xact_lock(1398227540, 1);
                IF p_epoch IS NOT NULL THEN
                    SELECT CASE WHEN is_called THEN last_value ELSE 0 END INTO v_head FROM events_id_seq;
                    IF v_head <> p_epoch THEN
                        RAISE EXCEPTION 'switchboard: events came after %', p_epoch USING ERRCODE = 'SB409';
                    END IF;
                END IF;
                FOR e IN SELECT value FROM jsonb_array_elements(p_events) WITH ORDINALITY ORDER BY ordinality LOOP
                    INSERT INTO events (at, recipient, devices, name, call_id, data)
                    VALUES (p_at, e->>'recipient', e->>'devices', e->>'name', e->>'call_id', decode(e->>'data', 'base64'))
                    RETURNING id INTO new_id;
                    ids := ids || new_id;
                END LOOP;
                -- Small batches travel whole, a large one is read from the table by its ids.
                payload := jsonb_build_object('ids', to_jsonb(ids), 'at', p_at, 'node', node, 'events', p_events)::text;
                IF octet_length(payload) > 7900 THEN
                    payload := jsonb_build_object('ids', to_jsonb(ids), 'at', p_at, 'node', node)::text;
                END IF;
                PERFORM pg_notify('switchboard_events', payload);
                RETURN QUERY SELECT unnest(ids);
            END $$;

            CREATE OR REPLACE FUNCTION switchboard_commit(
                p_calls jsonb, p_timeline jsonb, p_events jsonb, p_at double precision)
            RETURNS SETOF bigint LANGUAGE sql AS $$
                SELECT switchboard_commit_checked(NULL, p_calls, p_timeline, p_events, p_at)
            $$;

            -- A batch a node decided from its cache: the user locks a load would take, then, if none of the calls
            -- its invites create exists (SB409 otherwise), the checked commit.
            CREATE FUNCTION switchboard_commit_cached(
                p_epoch bigint, p_keys text[], p_new_ids text[], p_calls jsonb, p_timeline jsonb, p_events jsonb,
                p_at double precision)
            RETURNS SETOF bigint LANGUAGE plpgsql SET enable_seqscan = off SET jit = off AS $$
            DECLARE
                h bigint;
            BEGIN
                FOR h IN SELECT DISTINCT hashtextextended(k, 0) FROM unnest(p_keys) AS k WHERE k IS NOT NULL ORDER BY 1
                LOOP
                    PERFORM pg_advisory_xact_lock(h);
                END LOOP;
                IF EXISTS (SELECT 1 FROM calls WHERE id = ANY (p_new_ids)) THEN
                    RAISE EXCEPTION 'switchboard: a new call exists' USING ERRCODE = 'SB409';
                END IF;
                RETURN QUERY SELECT switchboard_commit_checked(p_epoch, p_calls, p_timeline, p_events, p_at);
            END $$;

            -- The last event id handed out, once every commit holding the ordering lock has ended: what a load
            -- read after it is exact up to it. (The sequence alone also counts ids of commits still in flight.)
            -- The lock is a session one, held only for the read and released whatever happens.
            CREATE FUNCTION switchboard_event_head() RETURNS bigint LANGUAGE plpgsql SET jit = off AS $$
            DECLARE
                v_head bigint;
            BEGIN
                PERFORM pg_advisory_lock_shared(1398227540, 1);
                BEGIN
                    SELECT CASE WHEN is_called THEN last_value ELSE 0 END INTO v_head FROM events_id_seq;
                EXCEPTION WHEN OTHERS THEN
                    PERFORM pg_advisory_unlock_shared(1398227540, 1);
                    RAISE;
                END;
                PERFORM pg_advisory_unlock_shared(1398227540, 1);
                RETURN v_head;
            END $$;
            """
        ),
    ]
}
