# rails-puma: the contract of docs/CONTRACT.md on Rails 6.1 (ActionController::API), ActiveRecord's
# connection pool over pg, and Net::HTTP to the upstream, under Puma's workers x threads
# (puma.rb). Debian's packages (ruby-rails, puma, ruby-pg) are the gems: RubyGems is not reachable.
ENV["RAILS_ENV"] ||= "production"
require "rails"
require "active_record/railtie"
require "action_controller/railtie"
require_relative "contract"

module Lab
  SETTINGS = {
    target_name: ENV.fetch("TARGET_NAME"), db_ms: Integer(ENV.fetch("DB_MS", "50")),
    llm_ms: Integer(ENV.fetch("LLM_MS", "500")), timeout_s: Float(ENV.fetch("UPSTREAM_TIMEOUT_S", "30")),
    pool_size: Integer(ENV.fetch("DB_POOL_SIZE", "5")), pool_timeout_s: Float(ENV.fetch("DB_POOL_TIMEOUT_S", "30")),
    db_timeout_s: Float(ENV.fetch("DB_TIMEOUT_S", "10")),
    upstream: URI(ENV.fetch("UPSTREAM_URL").chomp("/") + "/v1/chat/completions")
  }.freeze

  class App < Rails::Application
    config.load_defaults 6.1
    config.api_only = true
    config.eager_load = true
    config.root = __dir__
    config.secret_key_base = "unused: no sessions, no cookies"
    config.logger = ActiveSupport::Logger.new($stderr)
    config.log_level = :warn # no access log
    config.hosts.clear
    config.consider_all_requests_local = false
    # What the router and the middleware raise (a malformed query, say) answers in the JSON shape.
    config.exceptions_app = ->(env) { Contract.exceptions_app(env) }
  end

  # Rails 6.1 pings every connection it checks out (`SELECT 1`, a round trip per request); Rails 7.1
  # verifies only connections idle for a while. The contract allows no per-request ping: a
  # connection is verified once, and one that died meanwhile is caught on use and retried (Store).
  module VerifyOnce
    def verify!
      super unless @lab_verified
      @lab_verified = true
    end
  end
  require "active_record/connection_adapters/postgresql_adapter"
  ActiveRecord::ConnectionAdapters::PostgreSQLAdapter.prepend(VerifyOnce)
end

Lab::App.initialize!
# DB_TIMEOUT_S to open a connection (libpq counts whole seconds) and for each statement, which the
# server cancels: a database that hangs is a 503 within it, not a request held until Puma's timeout.
ActiveRecord::Base.establish_connection(url: ENV.fetch("DATABASE_URL"), pool: Lab::SETTINGS[:pool_size],
                                        checkout_timeout: Lab::SETTINGS[:pool_timeout_s],
                                        connect_timeout: Lab::SETTINGS[:db_timeout_s].ceil,
                                        variables: { statement_timeout: (Lab::SETTINGS[:db_timeout_s] * 1000).round })
require_relative "lab_controller"

Lab::App.routes.draw do
  user = { user_id: %r{[^/]+} }
  scope module: "lab" do
  get "/healthz", to: "lab#healthz"
  get "/readyz", to: "lab#readyz"
  get "/cpu", to: "lab#cpu"
  get "/recommendation/:user_id", to: "lab#recommendation", constraints: user, format: false
  get "/stream/:user_id", to: "lab#stream", constraints: user, format: false
  get "/recommendation", to: "lab#user_id_required" # Rails reads "/recommendation/" as this path
  %w[/healthz /readyz /cpu /recommendation /recommendation/:user_id /stream/:user_id].each do |path|
    match path, to: "lab#method_not_allowed", via: :all, constraints: user, format: false
  end
  match "*path", to: "lab#no_route", via: :all, format: false
  end
end
