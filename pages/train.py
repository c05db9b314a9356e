"""Train page: a form for one training run, pre-filled from a named recipe; Launch starts it in
the background (its own OS process, so it survives page reloads) or queues it behind the run
in progress."""
import dataclasses

import streamlit as st

import ui
from charlab.config import AugmentConfig, ModelConfig, TrainConfig, from_dict
from charlab.errors import CharlabError

ui.require_app_frame()

st.title("Train")
src = ui.source()
if not src:
    st.info("Choose a data source in the sidebar first.")
    st.stop()
image_size = int(st.session_state.get("image_size", 28))
st.caption(f"Trains on the sidebar's source, `{src}`, at its image size ({image_size}×{image_size}). Early stopping and the best checkpoint follow the "
           "validation split; the source's own test split, if any, is evaluated once at the end.")

from charlab.augment import get_preset, list_presets  # noqa: E402
from charlab.balance import BALANCE_STRATEGIES  # noqa: E402
from charlab.data.sources import check_source  # noqa: E402
from charlab.optim import OPTIMIZERS, SCHEDULES  # noqa: E402
from charlab.models import list_models, model_info  # noqa: E402
from charlab.recipes import get_recipe, list_recipes, recipe_doc  # noqa: E402
from charlab.runs import launch, list_runs  # noqa: E402

CUSTOM = "custom (from the Augmentation page)"
models = list_models()
presets = list_presets() + ([CUSTOM] if st.session_state.get("aug_custom") else [])
inits = [None] + [ref for ref, _ in ui.model_choices()]
init_labels = dict(ui.model_choices())
ref_label = lambda none: (lambda r: none if r is None else init_labels.get(r, r))  # noqa: E731


def form_values(cfg: TrainConfig) -> dict:
    """A recipe's config as the form's widget values (keyed by widget key)."""
    return {"tr_model": cfg.model.name, "tr_epochs": cfg.epochs, "tr_batch": cfg.batch_size, "tr_lr": float(cfg.lr),
            "tr_patience": cfg.patience, "tr_aug": cfg.augment.preset if cfg.augment.preset in presets else "none",
            "tr_balance": cfg.balance, "tr_target": int(cfg.balance_target or 0), "tr_seed": cfg.seed,
            "tr_opt": cfg.optimizer, "tr_sched": cfg.schedule, "tr_smooth": float(cfg.label_smoothing),
            "tr_minutes": float(cfg.max_minutes or 0.0)}


def apply_recipe() -> None:
    st.session_state.update(form_values(get_recipe(st.session_state["tr_recipe"])))


recipes = list_recipes(with_noaug=False)
r1, r2 = st.columns([1, 2], vertical_alignment="bottom")
recipe = r1.selectbox("Recipe", recipes, key="tr_recipe", on_change=apply_recipe,
                      help="Fills the form with a named setting: charlab's default or one of the reports' experiments.")
r2.caption(recipe_doc(recipe))
if "tr_epochs" not in st.session_state:  # first visit: the form shows the chosen recipe
    apply_recipe()
base = get_recipe(recipe)

with st.form("train_form", border=True):
    c1, c2, c3 = st.columns(3, gap="large")
    with c1:
        st.markdown("**Model**")
        model = st.selectbox("Architecture", models, key="tr_model")
        init_from = st.selectbox("Start from (fine-tune)", inits, key="tr_init", format_func=ref_label("scratch (random weights)"),
                                 help="Trained weights to start from; the head is replaced when the classes differ.")
        teacher = st.selectbox("Teacher (distillation)", inits, key="tr_teacher", format_func=ref_label("none"),
                               help="A trained model or ensemble file whose softened predictions the new model also "
                                    "learns, on the same augmented images; one model comes out.")
    with c2:
        st.markdown("**Schedule**")
        epochs = st.number_input("Epochs (at most)", 1, 500, key="tr_epochs")
        batch_size = st.selectbox("Batch size", sorted({32, 64, 128, 256, 512, base.batch_size}), key="tr_batch")
        lr = st.number_input("Learning rate", 1e-5, 1.0, format="%.4f", step=1e-4, key="tr_lr")
        patience = st.number_input("Early-stopping patience (epochs, 0 = off)", 0, 100, key="tr_patience")
    with c3:
        st.markdown("**Data**")
        aug = st.selectbox("Augmentation", presets, key="tr_aug", help="Preview each preset on the Augmentation page.")
        balance = st.selectbox("Class balancing", BALANCE_STRATEGIES.names(), key="tr_balance")
        target = st.number_input("Oversample target per class (0 = median)", 0, 100_000, key="tr_target",
                                 help="Only used by the oversample strategy.")
        seed = st.number_input("Seed", 0, 10**9, key="tr_seed")
    with st.expander("More options"):
        a1, a2, a3, a4 = st.columns(4)
        optimizer = a1.selectbox("Optimizer", OPTIMIZERS.names(), key="tr_opt")
        schedule = a2.selectbox("LR schedule", SCHEDULES.names(), key="tr_sched")
        smoothing = a3.number_input("Label smoothing", 0.0, 0.5, step=0.05, key="tr_smooth")
        max_minutes = a4.number_input("Time budget (minutes, 0 = none)", 0.0, 1440.0, step=1.0, key="tr_minutes")
    submitted = st.form_submit_button("Launch", icon=ui.ICONS["train"], type="primary")


@st.cache_data(max_entries=1, show_spinner="Building each model once to count its parameters…")
def model_table(names: tuple[str, ...]) -> list[dict]:
    return [{"model": m, "parameters (62 classes, 28×28)": model_info(m).get("params_62x28"),
             "what it is": model_info(m).get("description", ""), "from": model_info(m).get("report") or ""}
            for m in names]


# Counting parameters builds every model (EfficientNet takes seconds), so only on request.
if st.toggle("Describe the models", key="tr_about"):
    st.dataframe(model_table(tuple(models)), hide_index=True)

if submitted:
    if aug == CUSTOM:
        augment = from_dict(AugmentConfig, st.session_state["aug_custom"])
    elif aug == base.augment.preset:
        augment = base.augment  # the recipe's own values, even where they differ from the named preset
    else:
        augment = get_preset(aug)
    # Fields the form does not show (weight decay, EMA, model options…) stay as the recipe has them;
    # a model other than the recipe's starts from its own defaults.
    config = dataclasses.replace(
        base,
        # the source's label-override file (Labels page) goes with it, stored in the run's config
        data=dataclasses.replace(base.data, source=src, image_size=image_size, labels=ui.data_config().labels),
        augment=augment,
        model=base.model if model == base.model.name else ModelConfig(name=model),
        epochs=int(epochs), batch_size=int(batch_size), lr=float(lr), patience=int(patience),
        optimizer=optimizer, schedule=schedule, label_smoothing=float(smoothing),
        balance=balance, balance_target=int(target) or None, seed=int(seed),
        init_from=init_from, teacher=teacher, max_minutes=float(max_minutes) or None,
    )
    try:
        config.validate()
        check_source(config.data.source, config.data.test_source, config.data.side_inputs,
                     config.data.side_dropout)  # not a failing run later
        run = launch(config, root=ui.runs_root())
        st.session_state["tr_last"] = (run.id, run.state, run.queue_position)
    except CharlabError as e:
        ui.error(e)

last = st.session_state.get("tr_last")
if last:
    run_id, state, place = last
    if place:  # only a queued run has a place in the queue
        st.success(f"Run **{run_id}** is queued (place {place} in the queue); it starts by itself when the "
                   "runs ahead of it finish.", icon=":material/schedule:")
    else:
        st.success(f"Run **{run_id}** started in the background.", icon=ui.ICONS["train"])
    st.page_link("pages/runs.py", label="Watch it learn on the Runs page", icon=ui.ICONS["runs"])

st.subheader("Queue")
try:
    active = [r for r in list_runs(ui.runs_root()) if r.is_active]
except CharlabError as e:
    active = []
    ui.error(e)
if active:
    import ui_runs

    st.dataframe([{"run": r.id, "state": ui_runs.state_label(r), "epoch": ui_runs.epoch_text(r), "model": r.model,
                   "source": r.source} for r in active], hide_index=True)
else:
    st.caption("Nothing is training now.")
