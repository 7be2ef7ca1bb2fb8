//! How a placement's statements are planned: on generic plans, set for its transaction.

use crate::spawn_app;

/// A placement's transaction runs on generic plans: its statements take the lines as
/// arrays, which Postgres would otherwise plan again at every execution (a trigger on the
/// orders table records the setting the insert ran with).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placement_runs_on_generic_plans() {
    use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
    let app = spawn_app().await;
    let mut conn = app.db.connect().await;
    conn.batch_execute(
        "CREATE TABLE public.plan_modes (mode text NOT NULL);
         CREATE FUNCTION public.note_plan_mode() RETURNS trigger LANGUAGE plpgsql
             SECURITY DEFINER AS $$
         BEGIN
             INSERT INTO public.plan_modes VALUES (current_setting('plan_cache_mode'));
             RETURN NEW;
         END $$;
         CREATE TRIGGER note_plan_mode AFTER INSERT ON orders.orders
             FOR EACH ROW EXECUTE FUNCTION public.note_plan_mode();",
    )
    .await
    .unwrap();
    let (user, product) = app.shop(10);
    app.placed(&user, &product, 1).await;
    #[derive(diesel::QueryableByName)]
    struct Mode {
        #[diesel(sql_type = diesel::sql_types::Text)]
        mode: String,
    }
    let modes: Vec<Mode> = diesel::sql_query("SELECT mode FROM public.plan_modes")
        .load(&mut conn)
        .await
        .unwrap();
    let modes: Vec<String> = modes.into_iter().map(|m| m.mode).collect();
    assert_eq!(modes, ["force_generic_plan"]);
}
