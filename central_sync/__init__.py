"""AnQi central side: MQTT consumer, one person one file, offender tiers, dispositions, data sharing."""
