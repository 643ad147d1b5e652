# Puma's rackup file for rails-puma (targets.toml runs `puma ... rails_app/config.ru`).
require_relative "app"
run Lab::App
