-- The history of classifications answered by the gateway, one row each.
-- The gateway writes it; Hasura tracks it (metadata/databases/default/).
-- No image bytes are kept; a URL is kept without its query string.
CREATE TABLE public.classifications (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now(),
    source text NOT NULL
        CONSTRAINT classifications_source_check
        CHECK (source IN ('upload', 'url', 'graphql-action')),
    image_sha256 text NOT NULL,
    image_width integer NOT NULL,
    image_height integer NOT NULL,
    url_scheme text,
    url_host text,
    url_path text,
    model_name text NOT NULL,
    model_version bigint NOT NULL,
    weights text NOT NULL,
    top_label text NOT NULL,
    top_score double precision NOT NULL,
    top5 jsonb NOT NULL,
    latency_ms double precision NOT NULL,
    requester_role text,
    requester_user_id text
);

COMMENT ON TABLE public.classifications IS
    'One row per classification answered by the DeepClassify gateway.';

-- Newest first, and a user's own rows newest first.
CREATE INDEX classifications_created_at_idx
    ON public.classifications (created_at DESC, id DESC);
CREATE INDEX classifications_user_idx
    ON public.classifications (requester_user_id, created_at DESC)
    WHERE requester_user_id IS NOT NULL;
