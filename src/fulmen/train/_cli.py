"""LightningCLI: a command line for a LightningModule (and datamodule) from their signatures.

Built on jsonargparse, as Lightning's: every ``__init__`` argument of the Trainer, the model and
the datamodule becomes an option (``--trainer.max_epochs 3``, ``--model.lr 0.1``) and a key of a
YAML config (``--config config.yaml``); ``--print_config`` prints the resolved config.

    LightningCLI(Model, DataModule)          # python app.py fit --config config.yaml
        parse: subcommand (fit/validate/test/predict) with its options, or, run=False, none
        seed_everything (seed_everything_default; the config's "seed_everything")
        instantiate: model, datamodule, Trainer (trainer_defaults, then the config; plus the
                     callbacks given as classes and a SaveConfigCallback)
        run: before_<subcommand>(), trainer.<subcommand>(model, datamodule, ckpt_path, ...),
             after_<subcommand>()

No ``from __future__ import annotations`` here: jsonargparse reads these signatures at run time.
"""

import os
import warnings
from collections.abc import Callable
from typing import Any

import torch

from fulmen.train.callback import Callback
from fulmen.train.module import LightningDataModule, LightningModule
from fulmen.train.trainer import Trainer
from fulmen.train.utilities import seed_everything

try:  # jsonargparse is a dependency; import it here so that a broken install says so plainly
    import jsonargparse
    from jsonargparse import (  # type: ignore[attr-defined, unused-ignore]
        ActionConfigFile,
        ArgumentParser,
        Namespace,
    )
except ImportError as _exc:  # pragma: no cover - only without the dependency
    raise ModuleNotFoundError(
        "LightningCLI needs jsonargparse: `pip install 'jsonargparse[signatures]'`"
    ) from _exc

_JSONARGPARSE = tuple(int(p) for p in jsonargparse.__version__.split(".")[:2] if p.isdigit())

__all__ = ["LightningArgumentParser", "LightningCLI", "SaveConfigCallback", "cli_lightning_logo"]

_LOGO = r"""
        ________
       /       /
      /       /
     /       /______
    /              /
   /_______       /
          /      /
         /     /
        /    /
       /   /        fulmen
      /  /
     / /
    //
"""


def cli_lightning_logo() -> None:
    """Print the logo (Lightning's example scripts start with it)."""
    print()
    print("\033[0;35m" + _LOGO + "\033[0m")
    print()


_LIGHTNING_CLASSES = (Trainer, LightningModule, LightningDataModule, Callback)


class LightningArgumentParser(ArgumentParser):
    """jsonargparse's ArgumentParser with ``add_lightning_class_args`` (Lightning's)."""

    def __init__(
        self,
        *args: Any,
        description: str = "Lightning Trainer command line tool",
        env_prefix: str = "PL",
        default_env: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            *args, description=description, env_prefix=env_prefix, default_env=default_env, **kwargs
        )
        self.callback_keys: list[str] = []

    def add_lightning_class_args(
        self,
        lightning_class: Any,
        nested_key: str,
        subclass_mode: bool = False,
        required: bool = True,
    ) -> list[str]:
        """Add the ``__init__`` arguments of a Trainer, LightningModule, LightningDataModule or
        Callback class under ``nested_key``; a callback so added joins the Trainer's callbacks."""
        if callable(lightning_class) and not isinstance(lightning_class, type):
            pass  # a function returning one of those: its signature is used
        elif not (
            isinstance(lightning_class, type) and issubclass(lightning_class, _LIGHTNING_CLASSES)
        ):
            raise ValueError(
                f"Cannot add arguments from: {lightning_class}. You should provide either a "
                "callable or a subclass of: Trainer, LightningModule, LightningDataModule, or "
                "Callback."
            )
        if isinstance(lightning_class, type) and issubclass(lightning_class, Callback):
            self.callback_keys.append(nested_key)
        if subclass_mode:
            added: list[str] = self.add_subclass_arguments(
                lightning_class, nested_key, fail_untyped=False, required=required
            )
            return added
        instantiate = not (
            isinstance(lightning_class, type) and issubclass(lightning_class, Trainer)
        )
        return list(
            self.add_class_arguments(
                lightning_class,
                nested_key,
                fail_untyped=False,
                instantiate=instantiate,
                sub_configs=True,
            )
        )


class SaveConfigCallback(Callback):
    """Save the parsed config to the log directory (``config.yaml``) when the run sets up.

    An existing file is an error unless ``overwrite=True`` (a previous run's results are not
    silently mixed with a new config)."""

    def __init__(
        self,
        parser: LightningArgumentParser,
        config: Namespace,
        config_filename: str = "config.yaml",
        overwrite: bool = False,
        multifile: bool = False,
        save_to_log_dir: bool = True,
    ) -> None:
        self.parser = parser
        self.config = config
        self.config_filename = config_filename
        self.overwrite = overwrite
        self.multifile = multifile
        self.save_to_log_dir = save_to_log_dir
        self.already_saved = False
        if not save_to_log_dir and type(self).save_config is SaveConfigCallback.save_config:
            raise ValueError(
                "`save_to_log_dir=False` only makes sense when subclassing SaveConfigCallback to "
                "implement `save_config` and it is desired to disable the standard behavior of "
                "saving to log_dir."
            )

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        if self.save_to_log_dir:
            log_dir = trainer.log_dir
            config_path = os.path.join(log_dir, self.config_filename)
            exists = os.path.isfile(config_path) if trainer.is_global_zero else False
            exists = bool(trainer.strategy.broadcast(exists))
            if not self.overwrite and exists:
                raise RuntimeError(
                    f"{type(self).__name__} expected {config_path} to NOT exist. Aborting to "
                    "avoid overwriting results of a previous run. You can delete the previous "
                    "config file, set `LightningCLI(save_config_callback=None)` to disable "
                    'config saving, or set `LightningCLI(save_config_kwargs={"overwrite": '
                    "True})` to overwrite the config file."
                )
            if trainer.is_global_zero:
                os.makedirs(log_dir, exist_ok=True)
                # every key, None values included (jsonargparse >= 4.49 spells it skip_unset)
                keep_all = (
                    {"skip_unset": False} if _JSONARGPARSE >= (4, 49) else {"skip_none": False}
                )
                self.parser.save(
                    self.config,
                    config_path,
                    overwrite=self.overwrite,
                    multifile=self.multifile,
                    **keep_all,
                )
        if trainer.is_global_zero:
            self.save_config(trainer, pl_module, stage)
        self.already_saved = True

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Override to save the config elsewhere too (a logger, an artifact); rank zero only."""


# the Trainer method arguments that the command line does not expose (objects, not options)
_SUBCOMMANDS: dict[str, set[str]] = {
    "fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"},
    "validate": {"model", "dataloaders", "datamodule"},
    "test": {"model", "dataloaders", "datamodule"},
    "predict": {"model", "dataloaders", "datamodule"},
}


class LightningCLI:
    """A command line (and YAML config) for training ``model_class`` with ``datamodule_class``.

    With ``run=True`` (the default) the first argument is a subcommand: fit, validate, test or
    predict. With ``run=False`` nothing runs: ``cli.model``, ``cli.datamodule`` and
    ``cli.trainer`` are ready for the script to use.
    """

    def __init__(
        self,
        model_class: type[LightningModule] | Callable[..., LightningModule] | None = None,
        datamodule_class: type[LightningDataModule]
        | Callable[..., LightningDataModule]
        | None = None,
        save_config_callback: type[SaveConfigCallback] | None = SaveConfigCallback,
        save_config_kwargs: dict[str, Any] | None = None,
        trainer_class: type[Trainer] | Callable[..., Trainer] = Trainer,
        trainer_defaults: dict[str, Any] | None = None,
        seed_everything_default: bool | int = True,
        parser_kwargs: dict[str, Any] | dict[str, dict[str, Any]] | None = None,
        parser_class: type[LightningArgumentParser] = LightningArgumentParser,
        subclass_mode_model: bool = False,
        subclass_mode_data: bool = False,
        args: list[str] | dict[str, Any] | Namespace | None = None,
        run: bool = True,
        auto_configure_optimizers: bool = True,
    ) -> None:
        self.save_config_callback = save_config_callback
        self.save_config_kwargs = save_config_kwargs or {}
        self.trainer_class = trainer_class
        self.trainer_defaults = trainer_defaults or {}
        self.seed_everything_default = seed_everything_default
        self.parser_kwargs = parser_kwargs or {}
        self.parser_class = parser_class
        self.auto_configure_optimizers = auto_configure_optimizers
        self.model_class = model_class
        # no model class: any LightningModule subclass, chosen in the config (class_path)
        self._model_class = model_class or LightningModule
        self.subclass_mode_model = (model_class is None) or subclass_mode_model
        self.datamodule_class = datamodule_class
        self._datamodule_class = datamodule_class or LightningDataModule
        self.subclass_mode_data = (datamodule_class is None) or subclass_mode_data

        main_kwargs, subparser_kwargs = self._setup_parser_kwargs(self.parser_kwargs)
        self.setup_parser(run, main_kwargs, subparser_kwargs)
        self.parse_arguments(self.parser, args)
        self.subcommand: str | None = self.config["subcommand"] if run else None
        self._set_seed()
        self.before_instantiate_classes()
        self.instantiate_classes()
        if self.subcommand is not None:
            self._run_subcommand(self.subcommand)

    # ------------------------------------------------------------------ the parser
    def _setup_parser_kwargs(
        self, parser_kwargs: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        subcommand_names = self.subcommands().keys()
        main = {k: v for k, v in parser_kwargs.items() if k not in subcommand_names}
        sub = {k: v for k, v in parser_kwargs.items() if k in subcommand_names}
        return main, sub

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        """A parser with ``-c/--config`` (and so ``--print_config``)."""
        parser = self.parser_class(**kwargs)
        parser.add_argument(
            "-c",
            "--config",
            action=ActionConfigFile,
            help="Path to a configuration file in json or yaml format.",
        )
        return parser

    def setup_parser(
        self, add_subcommands: bool, main_kwargs: dict[str, Any], subparser_kwargs: dict[str, Any]
    ) -> None:
        self.parser = self.init_parser(**main_kwargs)
        if add_subcommands:
            self._subcommand_method_arguments: dict[str, list[str]] = {}
            self._add_subcommands(self.parser, **subparser_kwargs)
        else:
            self._add_arguments(self.parser)

    def add_default_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--seed_everything",
            type=bool | int,
            default=self.seed_everything_default,
            help=(
                "Set to an int to run seed_everything with this value before classes "
                "instantiation. Set to True to use a random seed."
            ),
        )

    def add_core_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        defaults = {f"trainer.{k}": v for k, v in self.trainer_defaults.items() if k != "callbacks"}
        parser.set_defaults(defaults)
        parser.add_lightning_class_args(
            self._model_class, "model", subclass_mode=self.subclass_mode_model
        )
        if self.datamodule_class is not None:
            parser.add_lightning_class_args(
                self._datamodule_class, "data", subclass_mode=self.subclass_mode_data
            )
        else:  # an optional datamodule, chosen in the config
            parser.add_lightning_class_args(
                self._datamodule_class, "data", subclass_mode=True, required=False
            )

    def _add_arguments(self, parser: LightningArgumentParser) -> None:
        self.add_default_arguments_to_parser(parser)
        self.add_core_arguments_to_parser(parser)
        self.add_arguments_to_parser(parser)
        if self.auto_configure_optimizers:
            # not instantiated by the parser: the optimizer needs the model's parameters
            parser.add_subclass_arguments(
                torch.optim.Optimizer,
                "optimizer",
                required=False,
                fail_untyped=False,
                instantiate=False,
                skip={"params"},
            )
            parser.add_subclass_arguments(
                torch.optim.lr_scheduler.LRScheduler
                if hasattr(torch.optim.lr_scheduler, "LRScheduler")
                else torch.optim.lr_scheduler._LRScheduler,
                "lr_scheduler",
                required=False,
                fail_untyped=False,
                instantiate=False,
                skip={"optimizer"},
            )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Override to add arguments (``parser.add_argument``, ``parser.link_arguments``,
        ``parser.add_lightning_class_args``)."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Subcommand -> the Trainer method arguments it does not expose."""
        return {k: set(v) for k, v in _SUBCOMMANDS.items()}

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        parser_subcommands = parser.add_subcommands()
        trainer_class = self.trainer_class if isinstance(self.trainer_class, type) else Trainer
        for subcommand, skip in self.subcommands().items():
            fn = getattr(trainer_class, subcommand)
            description = (fn.__doc__ or "").strip().split("\n")[0]
            subcommand_kwargs = kwargs.get(subcommand, {})
            subcommand_kwargs.setdefault("description", description)
            subparser = self.init_parser(**subcommand_kwargs)
            self._add_arguments(subparser)
            added = subparser.add_method_arguments(
                trainer_class, subcommand, skip=skip, fail_untyped=False
            )
            self._subcommand_method_arguments[subcommand] = added
            parser_subcommands.add_subcommand(subcommand, subparser, help=description)

    def parse_arguments(
        self, parser: LightningArgumentParser, args: list[str] | dict[str, Any] | Namespace | None
    ) -> None:
        if isinstance(args, dict | Namespace):
            self.config = parser.parse_object(args)
        else:
            self.config = parser.parse_args(args)

    def _parser(self, subcommand: str | None) -> LightningArgumentParser:
        if subcommand is None:
            return self.parser
        action = self.parser._subcommands_action
        assert action is not None, "the parser has subcommands when a subcommand was parsed"
        parser: LightningArgumentParser = action._name_parser_map[subcommand]
        return parser

    # ------------------------------------------------------------------ instantiation
    def _set_seed(self) -> None:
        config = self._config_of(self.config)
        seed = config.get("seed_everything", self.seed_everything_default)
        if seed is False or seed is None:
            return
        if seed is True:
            seed = seed_everything(workers=True)
            config["seed_everything"] = seed  # the saved config says which seed it was
        else:
            seed_everything(int(seed), workers=True)

    def before_instantiate_classes(self) -> None:
        """Override to run code before the classes are instantiated."""

    def instantiate_classes(self) -> None:
        """Instantiate the datamodule, the model and the Trainer from the parsed config."""
        parser = self._parser(self.subcommand)
        # jsonargparse >= 4.49 names it ``instantiate`` (``instantiate_classes`` is deprecated)
        instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
        self.config_init = instantiate(self._config_of(self.config))
        self.datamodule: Any = self.config_init.get("data")
        self.model: Any = self.config_init.get("model")
        self._add_configure_optimizers_method_to_model()
        self.trainer = self.instantiate_trainer()

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The Trainer from ``trainer_defaults``, the config and ``kwargs``, with the callbacks
        the parser added (``add_lightning_class_args``) and the SaveConfigCallback."""
        parser = self._parser(self.subcommand)
        extra_callbacks = [self.config_init.get(key) for key in parser.callback_keys]
        trainer_config = {**dict(self.config_init.get("trainer") or {}), **kwargs}
        return self._instantiate_trainer(trainer_config, extra_callbacks)

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        key = "callbacks"
        value = config.get(key)
        config[key] = [] if value is None else list(value) if isinstance(value, list) else [value]
        config[key].extend(cb for cb in callbacks if cb is not None)
        if key in self.trainer_defaults:
            default = self.trainer_defaults[key]
            config[key] += default if isinstance(default, list) else [default]
        if self.save_config_callback is not None and not config.get("fast_dev_run", False):
            config[key].append(
                self.save_config_callback(
                    self._parser(self.subcommand),
                    self._config_of(self.config),
                    **self.save_config_kwargs,
                )
            )
        trainer: Trainer = self.trainer_class(**config)
        return trainer

    def _add_configure_optimizers_method_to_model(self) -> None:
        """``--optimizer``/``--lr_scheduler`` given: they become the model's optimizers."""
        optimizer_cfg = self._config_of(self.config).get("optimizer")
        if not self.auto_configure_optimizers or optimizer_cfg is None or self.model is None:
            return
        scheduler_cfg = self._config_of(self.config).get("lr_scheduler")
        model = self.model
        if type(model).configure_optimizers is not LightningModule.configure_optimizers:
            warnings.warn(
                f"`{type(model).__name__}.configure_optimizers` will be overridden by "
                f"`{type(self).__name__}.configure_optimizers` (--optimizer was given).",
                UserWarning,
                stacklevel=3,
            )

        def configure_optimizers() -> Any:
            built = _instantiate(optimizer_cfg, model.parameters())
            if scheduler_cfg is None:
                return built
            return {"optimizer": built, "lr_scheduler": _instantiate(scheduler_cfg, built)}

        # the instance's configure_optimizers is what the Trainer calls (Lightning does the same)
        model.configure_optimizers = configure_optimizers

    def _config_of(self, config: Namespace) -> Namespace:
        if self.subcommand is not None:
            sub: Namespace = config[self.subcommand]
            return sub
        return config

    # ------------------------------------------------------------------ running
    def _run_subcommand(self, subcommand: str) -> None:
        before = getattr(self, f"before_{subcommand}", None)
        if callable(before):
            before()
        fn = getattr(self.trainer, subcommand)
        fn(**self._prepare_subcommand_kwargs(subcommand))
        after = getattr(self, f"after_{subcommand}", None)
        if callable(after):
            after()

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        config = self.config_init.get(subcommand, self.config_init)
        allowed = self._subcommand_method_arguments[subcommand]
        kwargs = {k: v for k, v in dict(config).items() if k in allowed}
        kwargs["model"] = self.model
        if self.datamodule is not None:
            kwargs["datamodule"] = self.datamodule
        return kwargs


def _instantiate(config: Any, first: Any) -> Any:
    """``{"class_path": ..., "init_args": {...}}`` -> the object, with ``first`` (the params or
    the optimizer) as the first argument."""
    import importlib

    class_path = config["class_path"] if isinstance(config, dict) else config.class_path
    init_args = config.get("init_args", {}) if isinstance(config, dict) else config.get("init_args")
    module_name, _, name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), name)
    return cls(first, **dict(init_args or {}))
