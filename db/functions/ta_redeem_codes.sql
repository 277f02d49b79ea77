-- Several code redemptions in one statement, one transaction, one round trip, coalesced by the
-- server like rotations (db/batcher.ts). Each item gets exactly what ta_redeem_code gives it
-- alone, in (code_hash, position) order: two redemptions of one code in one batch are the same
-- race as two at once — the first redeems, the second is reuse and revokes what the first issued.
CREATE OR REPLACE FUNCTION public.ta_redeem_codes(p_items jsonb)
 RETURNS TABLE(i integer, outcome text, session_id uuid, grant_id uuid, revoked_count integer, subject text, scope text, audience text[], signed boolean)
 LANGUAGE plpgsql
AS $function$
#variable_conflict use_column
DECLARE
  v_item jsonb;
BEGIN
  FOR v_item IN
    SELECT x.item FROM jsonb_array_elements(p_items) AS x(item)
     ORDER BY x.item->>'code_hash', (x.item->>'i')::integer
  LOOP
    i := (v_item->>'i')::integer;
    SELECT r.outcome, r.session_id, r.grant_id, r.revoked_count, r.subject, r.scope, r.audience, r.signed
      INTO outcome, session_id, grant_id, revoked_count, subject, scope, audience, signed
      FROM ta_redeem_code(v_item) r;
    RETURN NEXT;
  END LOOP;
END
$function$;
