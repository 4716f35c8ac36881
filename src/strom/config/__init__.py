"""Broker and topic configuration with Kafka's names, defaults and precedence rules.

- `definitions`: types, sources, validators, ConfigError, DescribeConfigs shapes
- `properties`: java.util.Properties-compatible parsing and writing
- `broker_keys` / `topic_keys`: the tables of keys
- `broker`: BrokerConfig (file < STROM_* environment < --set < dynamic defaults < dynamic broker)
- `topic`: topic overrides, a topic's LogConfig, topic DescribeConfigs
"""

from strom.config.broker import (
    BrokerConfig,
    Listener,
    env_to_key,
    is_dynamic,
    is_known_key,
    validate_dynamic_broker_configs,
)
from strom.config.broker_keys import BROKER_DEFS, KNOWN_UNUSED
from strom.config.definitions import (
    ConfigDef,
    ConfigEntry,
    ConfigError,
    ConfigSource,
    ConfigSynonym,
    ConfigType,
    ConfigValue,
)
from strom.config.properties import dump_properties, load_properties, parse_properties
from strom.config.topic import (
    describe_topic_configs,
    effective_topic_value,
    log_config_for,
    validate_topic_configs,
)
from strom.config.topic_keys import TOPIC_DEFS

__all__ = [
    "BROKER_DEFS",
    "KNOWN_UNUSED",
    "TOPIC_DEFS",
    "BrokerConfig",
    "ConfigDef",
    "ConfigEntry",
    "ConfigError",
    "ConfigSource",
    "ConfigSynonym",
    "ConfigType",
    "ConfigValue",
    "Listener",
    "describe_topic_configs",
    "dump_properties",
    "effective_topic_value",
    "env_to_key",
    "is_dynamic",
    "is_known_key",
    "load_properties",
    "log_config_for",
    "parse_properties",
    "validate_dynamic_broker_configs",
    "validate_topic_configs",
]
