DROP TABLE IF EXISTS public.classifications;
