"""Broker and topic configuration with Kafka's names, defaults and precedence rules.

- `definitions`: types, sources, validators, ConfigError, DescribeConfigs shapes
- `properties`: java.util.Properties-compatible parsing and writing
- `validators`: Kafka's validators with Kafka's messages
- `broker_keys` (assembling broker_cluster/network/security/log/coordinator_keys) and
  `topic_keys`: the tables of keys Kafka 3.9 knows
- `broker`: BrokerConfig (file < STROM_* environment < --set < dynamic defaults < dynamic broker)
- `dynamic`: Kafka's rules for broker keys changed at run time
- `requirements`: Kafka's checks across broker keys
- `password_encoder`: dynamic passwords encrypted as Kafka stores them
- `listeners`: listener endpoints
- `topic`: topic overrides, a topic's LogConfig, topic DescribeConfigs
"""

from strom.config.broker import BrokerConfig, env_to_key, is_dynamic, log_no_effect
from strom.config.broker_keys import BROKER_DEFS, has_no_effect, is_known_key, known_def
from strom.config.definitions import (
    ConfigDef,
    ConfigEntry,
    ConfigError,
    ConfigSource,
    ConfigSynonym,
    ConfigType,
    ConfigValue,
    InvalidConfigurationError,
)
from strom.config.dynamic import (
    check_password_storage,
    check_thread_pools,
    decode_passwords,
    encode_passwords,
    validate_dynamic_broker_configs,
)
from strom.config.listeners import Listener
from strom.config.properties import dump_properties, load_properties, parse_properties
from strom.config.topic import (
    describe_topic_configs,
    effective_topic_value,
    log_config_for,
    log_no_effect_topic_keys,
    validate_topic_configs,
)
from strom.config.topic_keys import TOPIC_DEFS

__all__ = [
    "BROKER_DEFS",
    "TOPIC_DEFS",
    "BrokerConfig",
    "ConfigDef",
    "ConfigEntry",
    "ConfigError",
    "ConfigSource",
    "ConfigSynonym",
    "ConfigType",
    "ConfigValue",
    "InvalidConfigurationError",
    "Listener",
    "check_password_storage",
    "check_thread_pools",
    "decode_passwords",
    "describe_topic_configs",
    "dump_properties",
    "effective_topic_value",
    "encode_passwords",
    "env_to_key",
    "has_no_effect",
    "is_dynamic",
    "is_known_key",
    "known_def",
    "load_properties",
    "log_config_for",
    "log_no_effect",
    "log_no_effect_topic_keys",
    "parse_properties",
    "validate_dynamic_broker_configs",
    "validate_topic_configs",
]
