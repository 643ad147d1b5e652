# rails-puma-bare: Rails' hello-world, context for memory claims (not a benchmark target). Served
# exactly like rails-puma (same puma.rb, workers and threads; see targets.toml) but loads only
# ActionController: no ActiveRecord, no pg, no Net::HTTP. Its idle memory is the framework's own
# cost; rails-puma's minus it is the app's.
ENV["RAILS_ENV"] ||= "production"
require "rails"
require "action_controller/railtie"

class BareApp < Rails::Application
  config.load_defaults 6.1
  config.api_only = true
  config.eager_load = true
  config.root = __dir__
  config.secret_key_base = "unused: no sessions, no cookies"
  config.logger = ActiveSupport::Logger.new($stderr)
  config.log_level = :warn
  config.hosts.clear
end

class HealthController < ActionController::API
  def healthz = render(json: { status: "ok" })
  def readyz = render(json: { status: "ready" }) # nothing to be ready for: no DB, no upstream
end

BareApp.initialize!
BareApp.routes.draw do
  get "/healthz", to: "health#healthz"
  get "/readyz", to: "health#readyz"
end
run BareApp
