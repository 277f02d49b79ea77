-- Several refresh-token rotations in one statement, one transaction, one round trip, coalesced
-- by the server like revocations (db/batcher.ts). Each item gets exactly what ta_rotate_session
-- gives it alone, in (refresh_jti, position) order: two rotations of one token in one batch are
-- the same race as two at once — the first rotates, the second is reuse (or, within the grace
-- period, a replacement).
CREATE OR REPLACE FUNCTION public.ta_rotate_sessions_with_digests(p_items jsonb)
 RETURNS TABLE(i integer, outcome text, new_session_id uuid, subject text, scope text, audience text[], access_expires_at timestamp with time zone, refresh_expires_at timestamp with time zone, signed boolean)
 LANGUAGE plpgsql
AS $function$
#variable_conflict use_column
DECLARE
  v_item jsonb;
BEGIN
  FOR v_item IN
    SELECT x.item FROM jsonb_array_elements(p_items) AS x(item)
     ORDER BY x.item->>'refresh_jti', (x.item->>'i')::integer
  LOOP
    i := (v_item->>'i')::integer;
    SELECT r.outcome, r.new_session_id, r.subject, r.scope, r.audience, r.access_expires_at, r.refresh_expires_at, r.signed
      INTO outcome, new_session_id, subject, scope, audience, access_expires_at, refresh_expires_at, signed
      FROM ta_rotate_session(v_item) r;
    RETURN NEXT;
  END LOOP;
END
$function$;
