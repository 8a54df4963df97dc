
namespace Hmm;

/// <summary>
/// A simulated device with device-managed resources (the kernel's <c>struct device</c> and its devres list).
/// Release actions attached to it run in reverse order of registration when it is unbound, as
/// <c>devm_*</c> resources do when a driver detaches.
/// </summary>
/// <remarks>Concurrency model: the action list is guarded by a private lock that is never held while an action
/// runs. Once unbinding starts, new actions are refused with <see cref="Errno.ENODEV"/>.</remarks>
public sealed class ManagedDevice
{
    private readonly Lock _lock = new();
    private readonly List<Entry> _actions = [];
    private readonly List<DevPagemap> _pagemaps = [];
    private Task? _unbind;

    /// <summary>Creates a bound device in the given machine.</summary>
    /// <param name="memory">The physical memory the device's resources live in.</param>
    /// <param name="name">The device name, for logs and diagnostics.</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    public ManagedDevice(PhysicalMemory memory, string name)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(name);
        Memory = memory;
        Name = name;
    }

    /// <summary>The physical memory the device lives in.</summary>
    public PhysicalMemory Memory { get; }

    /// <summary>The device name.</summary>
    public string Name { get; }

    /// <summary>False once unbinding has started.</summary>
    public bool IsBound
    {
        get
        {
            lock (_lock)
            {
                return _unbind is null;
            }
        }
    }

    /// <summary>
    /// Attaches a release action (<c>devm_add_action</c>). If it cannot be attached the action does not run and
    /// the call throws; see <see cref="AddActionOrReset(Func{Task})"/> for the form that runs it at once.
    /// </summary>
    /// <param name="release">What to do at unbind.</param>
    /// <exception cref="ArgumentNullException"><paramref name="release"/> is null.</exception>
    /// <exception cref="HmmException"><see cref="Errno.ENODEV"/>: the device is unbinding; <see cref="Errno.ENOMEM"/>: an injected <see cref="FaultPoint.DevmAddAction"/> failure.</exception>
    public void AddAction(Func<Task> release) => Add(release, key: null);

    /// <summary>
    /// Attaches a release action, or, if that fails, runs it at once and throws (<c>devm_add_action_or_reset</c>):
    /// the resource never outlives a failed registration.
    /// </summary>
    /// <param name="release">What to do at unbind.</param>
    /// <exception cref="ArgumentNullException"><paramref name="release"/> is null.</exception>
    /// <exception cref="HmmException">As <see cref="AddAction"/>; the action has run by the time the exception is seen.</exception>
    public void AddActionOrReset(Func<Task> release) => AddOrReset(release, key: null);

    /// <summary>
    /// Unbinds the device: runs every release action in reverse order of registration, each to completion,
    /// including teardowns that wait for device pages to be freed. Idempotent: later calls join the first.
    /// </summary>
    /// <param name="cancellationToken">Stops waiting; the unbind itself continues.</param>
    /// <returns>A task that completes once every action has run. It faults with the actions' exceptions, if any threw.</returns>
    public Task UnbindAsync(CancellationToken cancellationToken = default) => StartUnbind().WaitAsync(cancellationToken);

    /// <summary>Unbinds the device and waits at most <paramref name="timeout"/>.</summary>
    /// <param name="timeout">How long to wait for outstanding device pages to be put.</param>
    /// <exception cref="DeviceTeardownTimeoutException">Pages are still referenced when the time runs out; it lists them. The unbind keeps going.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="timeout"/> is negative and not infinite.</exception>
    public void Unbind(TimeSpan timeout)
    {
        if (timeout < TimeSpan.Zero && timeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "The timeout must not be negative.");
        }

        Task unbind = StartUnbind();
        bool completed;
        try
        {
            completed = unbind.Wait(timeout);
        }
        catch (AggregateException error) when (error.InnerExceptions.Count == 1)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error.InnerExceptions[0]);
            throw;
        }

        if (!completed)
        {
            List<ReferencedPage> pages = [];
            foreach (DevPagemap pagemap in Pagemaps())
            {
                pages.AddRange(pagemap.ReferencedPages());
            }

            Log.DeviceUnbindTimedOut(Memory.Logger, Name, timeout, pages.Count);
            throw new DeviceTeardownTimeoutException(Name, timeout, pages);
        }
    }

    /// <summary>The pagemaps registered through <see cref="Devm.Map"/> on this device and not yet removed.</summary>
    /// <returns>A snapshot.</returns>
    public IReadOnlyList<DevPagemap> Pagemaps()
    {
        lock (_lock)
        {
            return _pagemaps.FindAll(p => p.State != DevPagemapState.Removed);
        }
    }

    internal void AddOrReset(Func<Task> release, object? key)
    {
        try
        {
            Add(release, key);
        }
        catch (HmmException)
        {
            Log.DevmActionRegistrationFailed(Memory.Logger, Name);
            release().GetAwaiter().GetResult();
            throw;
        }
    }

    internal void TrackPagemap(DevPagemap pagemap)
    {
        lock (_lock)
        {
            _pagemaps.Add(pagemap);
        }
    }

    /// <summary>Runs and detaches the action registered with <paramref name="key"/> now (<c>devm_release_action</c>).</summary>
    internal Task ReleaseEarly(object key)
    {
        Entry? entry = null;
        lock (_lock)
        {
            int index = _actions.FindIndex(a => ReferenceEquals(a.Key, key));
            if (index >= 0)
            {
                entry = _actions[index];
                _actions.RemoveAt(index);
            }
        }

        return entry is null
            ? Task.FromException(new HmmException(Errno.ENOENT, $"Device '{Name}' has no release action for that resource."))
            : entry.Release();
    }

    private void Add(Func<Task> release, object? key)
    {
        ArgumentNullException.ThrowIfNull(release);
        lock (_lock)
        {
            if (_unbind is not null)
            {
                ThrowHelper.ThrowHmm(Errno.ENODEV, $"Device '{Name}' is unbinding; no resource can be attached.");
            }

            if (Memory.FaultInjection.ShouldFail(FaultPoint.DevmAddAction))
            {
                ThrowHelper.ThrowHmm(Errno.ENOMEM, $"Injected failure attaching a release action to device '{Name}'.");
            }

            _actions.Add(new Entry(release, key));
        }
    }

    private Task StartUnbind()
    {
        Entry[] actions;
        lock (_lock)
        {
            if (_unbind is not null)
            {
                return _unbind;
            }

            actions = [.. _actions];
            _actions.Clear();
            _unbind = RunReleaseActions(actions);
            return _unbind;
        }
    }

    private async Task RunReleaseActions(Entry[] actions)
    {
        await Task.Yield();
        Log.DeviceUnbinding(Memory.Logger, Name, actions.Length);
        List<Exception>? errors = null;
        for (int i = actions.Length - 1; i >= 0; i--)
        {
            try
            {
                await actions[i].Release().ConfigureAwait(false);
            }
            catch (Exception error) when (error is not OutOfMemoryException)
            {
                (errors ??= []).Add(error);
            }
        }

        Log.DeviceUnbound(Memory.Logger, Name);
        if (errors is not null)
        {
            throw new AggregateException($"Release actions of device '{Name}' failed.", errors);
        }
    }

    private sealed record Entry(Func<Task> Release, object? Key);
}
