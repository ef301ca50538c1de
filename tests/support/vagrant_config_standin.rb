# Stand-in for Vagrant's configuration loader, for tests only: Vagrant itself is not installed in CI
# (its Debian package upgrades host packages). Real Ruby evaluates the Vagrantfile; this file only
# records every setting and call the Vagrantfile makes on its config object and prints them as JSON,
# so a test can check what Vagrant would have been told.
#
# Usage: ruby vagrant_config_standin.rb PATH/TO/Vagrantfile
require 'json'

# One level of Vagrant's config tree: `x.name = v` is a setting, `x.name` a sub-tree, and
# `x.name(args) { |inner| ... }` a call, with what its block did recorded under it.
class Recorder
  def initialize
    @settings = {}
    @children = {}
    @calls = []
  end

  def to_h
    h = {}
    @children.each { |k, v| h[k] = v.to_h }
    @settings.each { |k, v| h[k] = v }
    h['calls'] = @calls unless @calls.empty?
    h
  end

  def method_missing(name, *args, **kwargs, &block)
    name = name.to_s
    if name.end_with?('=')
      @settings[name.chomp('=')] = args.first
      return args.first
    end
    return @children[name] ||= Recorder.new if args.empty? && kwargs.empty? && block.nil?

    call = { 'call' => name, 'args' => args }
    call['options'] = kwargs.transform_keys(&:to_s) unless kwargs.empty?
    if block
      inner = Recorder.new
      block.call(inner)
      call['block'] = inner.to_h
    end
    @calls << call
    nil
  end

  def respond_to_missing?(*)
    true
  end
end

# The one entry point a Vagrantfile uses.
module Vagrant
  @configs = []
  class << self
    attr_reader :configs
  end

  def self.configure(version)
    raise "Vagrant.configure(#{version.inspect}): only version \"2\" exists" unless version == '2'

    config = Recorder.new
    yield config
    @configs << config.to_h
  end
end

load ARGV.fetch(0)
puts JSON.generate(Vagrant.configs)
